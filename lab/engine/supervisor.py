"""The one process per lab that owns its Mininet network.

Started by `lab up` (``python -m lab.engine.supervisor LAB READY_FD``): builds the network,
records what it created in state.json, tells `lab up` it is ready through READY_FD, then
serves the control socket until `lab down` (or SIGTERM) and tears everything down.
"""
from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any

from lab.engine import control
from lab.engine.layout import NodeFiles, hidden_layer
from lab.engine.lifecycle import free_lab
from lab.engine.nodebin import write_node_bin
from lab.engine.procs import exit_now
from lab.engine.state import OWNER_ENV, LabState, ProcRef, lab_dir, state_root
from lab.engine.trainee import TraineeChannel
from lab.errors import LabError
from lab.model.topology import Topology, load_topology
from lab.protocols.clock import LabClock
from lab.protocols.tlsnames import prepare_nodes


class Supervisor:
    def __init__(self, lab: str, topo: Topology, source: str) -> None:
        self.lab = lab
        self.topo = topo
        self.dir = lab_dir(lab)
        self.state = LabState(lab, topo.name, source, time.time(), ProcRef.of(os.getpid()))
        self.files = {n: NodeFiles(n, self.dir / "nodes" / n) for n in topo.nodes}
        self.network = None
        self.inits: dict[str, ProcRef] = {}  # node -> its sealed init (lab.engine.seal)
        self.services = None
        self.exercise = None
        self.ca = None
        self.trainee_uid: int | None = None  # the Unix user the attempt is bound to
        self.channel = None
        self.clock = LabClock()  # the lab's time: its loop runs on it (see main)
        self.history = None  # the background traffic (lab/history/)
        self.stopping: asyncio.Event | None = None
        self.torn_down = False

    def build(self) -> None:
        """Build the network; meanwhile write the nodes' files and the lab's TLS, and seal
        the nodes while the segments are checked."""
        from concurrent.futures import ThreadPoolExecutor

        from lab.engine.network import build

        started = time.monotonic()
        self.state.save()  # the supervisor is on record before anything else exists
        with ThreadPoolExecutor(max_workers=1) as pool:
            prepared = pool.submit(self.prepare_files)
            self.network = build(self.topo, self.files, files_ready=prepared.result,
                                 configured=self.seal)
        self.state.nodes = self.network.records(self.inits)
        self.state.save()
        print(f"files and TLS in {prepared.result():.3f} s (beside the network), network "
              f"built and nodes sealed in {time.monotonic() - started:.3f} s", flush=True)

    def prepare_files(self) -> float:
        """Each node's files, the lab's CA and certificates, the node commands; how long."""
        started = time.monotonic()
        hidden = hidden_layer(state_root())
        for name, node in self.topo.nodes.items():
            self.files[name].hidden = hidden
            self.files[name].create(node)
        self.ca = prepare_nodes(self.dir, self.lab, self.topo,
                                {n: f.root for n, f in self.files.items()})
        write_node_bin(self.dir / "bin")
        return time.monotonic() - started

    def seal(self, pids: dict[str, int]):
        """Start sealing the nodes (lab.engine.seal); what waits until they are sealed."""
        from lab.engine.seal import start_all, wait_all

        pending = start_all(pids, self.files, self.dir / "bin")
        return lambda: self.inits.update(wait_all(pending))

    async def start_services(self) -> None:
        from lab.services.host import ServiceHost

        started = time.monotonic()
        pids = {name: node.pid for name, node in self.network.hosts.items()}
        self.services = ServiceHost(self.topo, self.files, pids, self.ca, self.clock)
        await self.services.start()
        print(f"services healthy in {time.monotonic() - started:.3f} s", flush=True)
        self.start_history()

    def start_history(self) -> None:
        from lab.history.replay import LabHistory, enabled

        if enabled():
            self.history = LabHistory(self.services, self.lab)
            self.history.start()

    # --- control requests -------------------------------------------------------------
    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await reader.readline()
            req = json.loads(line)
            op = req.pop("op")
            handler = getattr(self, f"op_{op}", None)
            if handler is None:
                raise LabError(f"unknown request '{op}'")
            result = handler(**req)
            if asyncio.iscoroutine(result):
                result = await result
            writer.write(control.encode_reply(result))
        except LabError as e:
            writer.write(control.encode_reply(error=e))
        except Exception as e:  # noqa: BLE001 - a bad request must not take the lab down
            traceback.print_exc()
            writer.write(control.encode_reply(error=LabError(f"internal error: {e}")))
        try:
            await writer.drain()
            writer.close()
        except ConnectionError:
            pass

    def op_ping(self) -> str:
        return "pong"

    def init_of(self, node: Any) -> int:
        """The host PID of a node's sealed init (what a person's command joins)."""
        if not isinstance(node, str) or node not in self.inits:
            raise LabError(f"unknown node '{node}' in lab '{self.lab}'",
                           hint="nodes: " + ", ".join(sorted(self.inits)))
        if not self.inits[node].alive():
            raise LabError(f"node '{node}' of lab '{self.lab}' is gone")
        return self.inits[node].pid

    def kill_inits(self) -> None:
        """End every node's sealed processes: the kernel kills each PID namespace."""
        for init in self.inits.values():
            if init.alive():
                os.kill(init.pid, signal.SIGKILL)

    async def op_status(self) -> dict[str, Any]:
        from lab.engine.status import node_status

        health = await self.services.health() if self.services else {}
        nodes = {}
        for name, node in self.network.hosts.items():
            nodes[name] = {
                "pid": node.pid,
                "description": self.topo.nodes[name].description,
                **node_status(node),
                "services": health.get(name, []),
            }
        segments = {
            seg: {"subnet": str(s.subnet), "bridge": seg, "pid": self.network.switches[seg].pid}
            for seg, s in self.topo.segments.items()
        }
        return {"lab": self.lab, "topology": self.topo.name, "source": self.state.source,
                "created": self.state.created, "supervisor": os.getpid(),
                "segments": segments, "nodes": nodes}

    async def op_probe(self, names: list[str] | None = None) -> list[dict[str, Any]]:
        from lab.probes import run_probes

        return [r.to_dict() for r in await run_probes(self.services, names)]

    def lab_context(self):
        from lab.faults.base import LabContext

        def run(node: str, argv: list[str], stdin: str | None = None) -> tuple[int, str, str]:
            from lab.services.netns import node_runner

            return node_runner(self.network.node(node).pid)(argv, stdin)

        def node_ctx(name: str):
            self.network.node(name)  # unknown node -> LabError
            return self.services.contexts[name]

        return LabContext(self.topo, self.services.get, node_ctx, run)

    async def op_fault(self, action: str, name: str, params: dict | None = None) -> dict:
        """Apply, revert or check one fault of the catalog (see lab.faults.act); params not
        given are the ones the running attempt applied it with, if any."""
        from lab.engine.attempt import params_models
        from lab.faults import act
        from lab.model.scenario_check import FaultRef, forced_problems

        problems = forced_problems([FaultRef(fault=name, params=params or {})],
                                   params_models())
        if problems:  # pydantic's own text would not name the parameter as the CLI does
            raise LabError("\n  ".join(p.replace("--fault", "fault", 1) for p in problems),
                           hint="`lab faults` lists every fault and its parameters")
        applied = self.exercise.applied_params(name) if self.exercise is not None else None
        return await act(self.lab_context(), action, name, params, applied)

    async def op_evidence(self, out: str, capture: float) -> dict[str, Any]:
        """Capture every segment for ``capture`` seconds and copy the nodes' evidence to
        ``out`` (lab/evidence/collect.py)."""
        from lab.evidence.collect import LabView, collect
        from lab.model.roles import derive_roles

        view = LabView(self.topo, self.services.contexts,
                       {n: h.pid for n, h in self.network.hosts.items()},
                       {s: w.pid for s, w in self.network.switches.items()},
                       derive_roles(self.topo).firewall)
        return await collect(view, Path(out), capture)

    async def op_service(self, node: str, kind: str, action: str) -> str:
        """Start, stop or restart one service, as a trainee's repair may need."""
        svc = self.services.get(node, kind)
        if action in ("stop", "restart"):
            await svc.stop()
        if action in ("start", "restart"):
            await svc.start()
        if action not in ("start", "stop", "restart"):
            raise LabError(f"unknown service action '{action}'", hint="start, stop or restart")
        return f"{kind} on {node}: {action} done"

    # --- the attempt ------------------------------------------------------------------
    async def op_attempt_start(self, scenario: str, seed: int, faults: list[str | dict],
                               trainee: str, uid: int | None = None) -> dict[str, Any]:
        """Start the attempt; ``uid``: the Unix user whose trainee verbs it answers."""
        from lab.engine.exercise import Exercise

        if self.exercise is not None:
            raise LabError("an attempt is already running in this lab")
        self.exercise = await Exercise.start(self.lab_context(), self.lab, Path(scenario), seed,
                                             faults, trainee, self.history)
        self.trainee_uid = uid
        replayed = self.exercise.replayed
        if replayed is not None:
            print(f"history: {replayed.window:.0f} s replayed in {replayed.seconds:.2f} s, "
                  f"{replayed.steps} clock steps, {replayed.messages} messages", flush=True)
        return self.exercise.ticket()

    def _exercise(self):
        if self.exercise is None:
            raise LabError("no attempt is running in this lab",
                           hint="start one with `lab start SCENARIO`")
        return self.exercise

    def op_record(self, node: str, argv: list[str], line: str | None = None) -> None:
        if self.exercise is not None:
            self.exercise.record(node, argv, line)

    def op_ticket(self) -> dict[str, Any]:
        return self._exercise().ticket()

    def op_hint(self) -> dict[str, Any]:
        return self._exercise().hint()

    def op_submit(self, cause: str, node: str) -> dict[str, Any]:
        from lab.scoring.causes import get_cause

        get_cause(cause)  # an unknown cause is an error, not a submission
        return self._exercise().submit(cause, node, set(self.topo.nodes))

    def op_live(self, detail: bool = True) -> dict[str, Any]:
        """The instructor's live view of the attempt, submissions graded (root only: the
        trainee channel never offers it)."""
        from lab.engine.liveview import live_view

        ex = self._exercise()
        return live_view(ex.attempt, ex.scenario.accept, ex.scenario.title, ex.scored,
                         detail=bool(detail))

    async def op_score(self, results: str) -> dict[str, Any]:
        from lab.probes import run_probes

        exercise = self._exercise()
        exercise.ensure_open()
        probes = [r.to_dict() for r in await run_probes(self.services)]
        return await exercise.score(self.lab_context(), probes, Path(results))

    async def op_down(self) -> str:
        """Take the lab down, and only then answer: every process of the lab dead, its
        name free, its sockets gone (the files are deleted after: lab.engine.trash).
        `lab down` returns on this answer; this process ends right after it."""
        try:
            self.close_slow_handles()
            if self.channel is not None:  # no trainee gets in while the lab goes down
                self.channel.close()
                self.channel = None
            if self.history is not None:  # nothing starts new work in the nodes
                await self.history.stop()
            self.teardown()
        finally:  # this process ends once the answer is written (handle writes it next)
            asyncio.get_running_loop().call_soon(self.stopping.set)
        return "down"

    # --- lifecycle --------------------------------------------------------------------
    async def run(self, ready_fd: int) -> None:
        """Start the services, tell `lab up` we are ready, serve until told to stop."""
        try:
            await self.start_services()
        except LabError as e:
            _report(ready_fd, f"error: {e.message}")
            return  # main's teardown kills what was started
        try:
            await self.serve(ready_fd)
        finally:
            self.close_slow_handles()
            # no graceful stop of the services: they live in this process and in the
            # nodes, and the nodes' processes are killed (SIGKILL) with everything else
            self.teardown()

    async def serve(self, ready_fd: int) -> None:
        self.stopping = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.add_signal_handler(sig, self.stopping.set)
        path = control.socket_path(self.lab)
        old_umask = os.umask(0o077)
        server = await asyncio.start_unix_server(self.handle, path=path)
        os.umask(old_umask)
        self.channel = TraineeChannel(self)
        self.channel.start()
        _report(ready_fd, "ready")
        await self.stopping.wait()
        if self.channel is not None:
            self.channel.close()
        server.close()

    def close_slow_handles(self) -> None:
        """Close what the kernel is slow to release (Service.slow_closes) in a thread, while
        the teardown kills the lab's processes and waits for them: this process would
        otherwise spend that time in its exit, and `lab down` waits for its exit."""
        closes = self.services.slow_closes() if self.services is not None else []
        if closes:
            threading.Thread(target=lambda: [close() for close in closes], daemon=True,
                             name="slow-closes").start()

    def teardown(self) -> None:
        """SIGKILL every process of the lab and wait until none is left; then free its
        name at once (its state folder renamed away, deleted by a detached process).
        Raises if some process would not die: the folder stays, for `lab clean`."""
        from lab.engine.network import kill_shells

        if self.torn_down:  # once: the CLI's fallback (`lab clean`'s way) does the rest
            return
        self.torn_down = True
        self.kill_inits()
        if self.network is not None:
            kill_shells(self.network)
        free_lab(self.lab, {rec.netns: rec.cookie for rec in self.state.nodes.values()},
                 wait=False)


def _report(fd: int, message: str) -> None:
    """One line to `lab up` waiting on the other end of the pipe, then close it."""
    try:
        os.write(fd, message.encode() + b"\n")
        os.close(fd)
    except OSError:
        pass


def main(argv: list[str]) -> int:
    """Build the lab, report on the ready pipe, serve until stopped, tear down.

    Always a fresh interpreter started by `lab up` (not a fork of it): a fork would show
    `lab up`'s or `lab start`'s arguments as the supervisor's command line, which every
    node can read (docs/design.md, rule 4)."""
    lab, ready_fd = argv[0], int(argv[1])
    os.environ[OWNER_ENV] = lab
    sup = None
    try:
        topo = load_topology(lab_dir(lab) / "topology.yaml")
        source = (lab_dir(lab) / "source").read_text().strip()
        sup = Supervisor(lab, topo, source)
        sup.build()
    except Exception as e:  # noqa: BLE001 - any failure is reported to the waiting start
        msg = e.message if isinstance(e, LabError) else f"{type(e).__name__}: {e}"
        if not isinstance(e, LabError):
            traceback.print_exc()
        _report(ready_fd, f"error: {msg}")
        if sup is not None:
            sup.teardown()
        return 1
    try:
        with asyncio.Runner(loop_factory=sup.clock.new_loop) as runner:
            runner.run(sup.run(ready_fd))
            if sup.torn_down:  # `lab down` waits for this process to end: closing the
                exit_now(0)  # loop (its tasks, its threads) would only delay it
    finally:
        sup.teardown()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
