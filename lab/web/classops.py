"""What the classroom server does to labs: start a class, ask a trainee's supervisor for
the ticket, a hint, a submission or the score, follow every attempt for the dashboard,
end the class, and take every lab it started down when it stops.

Every call here blocks (it talks to supervisors over their control sockets, builds and
removes labs): the web routes run them in threads. The server is root, reaches each lab
through its root-only control socket, and is the one that decides which lab a request
is about (a trainee's own, from their token), never the request itself.
"""
from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from lab.engine import batch, control, lifecycle
from lab.engine.attempt import load, take_down
from lab.engine.liveview import live_view
from lab.engine.state import lab_dir, results_root
from lab.errors import LabError
from lab.exercise_cli import submit_answer
from lab.model.topology import load_topology
from lab.scoring.causes import get_cause
from lab.web.roster import Classroom, Trainee

log = logging.getLogger("lab.web")
POLL_TIMEOUT = 3.0
SCORE_TIMEOUT = 120.0
POLL_WORKERS = 8


class ClassOps:
    """The server's labs and its current class (one at a time; a new class replaces an
    ended one, whose trainee tokens expire with it)."""

    def __init__(self, prefix: str, parallel: int = batch.DEFAULT_PARALLEL,
                 on_change=None) -> None:
        self.prefix = prefix
        self.parallel = parallel
        self.on_change = on_change or (lambda: None)
        self.classroom: Classroom | None = None
        self.started_labs: list[str] = []  # every lab this server run started
        self.numbered = 0
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.builder: threading.Thread | None = None
        self.poller = ThreadPoolExecutor(POLL_WORKERS, thread_name_prefix="poll")

    # --- a class ---------------------------------------------------------------------
    def start_class(self, scenario_ref: str, names: list[str], seed: int | None) -> Classroom:
        """Check the scenario, make the roster, start the labs in the background."""
        with self.lock:
            if self.classroom is not None and self.classroom.phase != "ended":
                raise LabError("a class is running", hint="end it before starting another")
            if self.stop.is_set():
                raise LabError("the server is stopping")
            path, scenario = load(scenario_ref)
            labs = batch.seat_labs(self.prefix, len(names), self.numbered + 1)
            self.numbered += len(names)
            seats = [batch.Seat(n, lab, seed if seed is not None else batch.random_seed())
                     for n, lab in zip(names, labs)]
            room = Classroom(scenario.name, scenario.title, path,
                             {s.trainee: Trainee(s.trainee, s.lab, s.seed) for s in seats})
            self.classroom = room
            self.started_labs += labs
            self.builder = threading.Thread(target=self._build, args=(room, path, scenario,
                                                                      seats), daemon=True)
            self.builder.start()
        return room

    def _build(self, room: Classroom, path: Path, scenario, seats: list[batch.Seat]) -> None:
        def on_event(kind: batch.Event, seat: batch.Seat) -> None:
            trainee = room.trainees[seat.trainee]
            topology = _topology(seat.lab) if kind == "up" else None
            with room.lock:
                trainee.lab_state = {"starting": "starting", "up": "up"}.get(kind, "failed")
                trainee.error = seat.error
                if kind == "up":
                    trainee.ticket, trainee.topology, trainee.attempt = seat.ticket, topology, "open"
            self.on_change()

        batch.start_seats(path, scenario, seats, self.parallel, on_event, self.stop)
        with room.lock:
            for trainee in room.trainees.values():
                if trainee.lab_state == "queued":
                    trainee.lab_state, trainee.error = "failed", "not started"
            if room.phase == "starting":
                room.phase = "running"
        self.on_change()

    def end_class(self) -> None:
        """Score every open attempt, then take every lab of the class down (blocking).
        The class is "ended" afterwards whatever went wrong; a trainee's line says what."""
        room = self.classroom
        if room is None or room.phase in ("ending", "ended"):
            return
        with room.lock:
            room.phase = "ending"
        self.on_change()
        try:
            self._wait_builder()
            trainees = [t for t in room.trainees.values() if t.lab_state == "up"]
            with ThreadPoolExecutor(self.parallel, thread_name_prefix="end") as pool:
                list(pool.map(self._score_quietly, trainees))
                list(pool.map(self._down, trainees))
        finally:
            with room.lock:
                room.phase = "ended"
            self.on_change()

    def _score_quietly(self, trainee: Trainee) -> None:
        if trainee.attempt != "open":
            return
        try:
            self.finish(trainee)
        except LabError as e:
            trainee.error = f"not scored: {e.message}"
        except Exception as e:
            log.exception("scoring %s", trainee.lab)
            trainee.error = f"not scored: {type(e).__name__}: {e}"

    def _down(self, trainee: Trainee) -> None:
        close_terminals(trainee)
        trainee.lab_state = "stopping"
        self.on_change()
        trainee.lab_state = "down" if _take_down(trainee.lab) else "failed"
        if trainee.lab_state == "failed":
            trainee.error = "the lab could not be taken down: see `lab ls`"
        self.on_change()

    def _wait_builder(self) -> None:
        if self.builder is not None:
            self.builder.join()

    def teardown(self) -> list[str]:
        """Every lab this server started goes down (no scoring): when the server stops,
        also after an error. Returns the labs that were still there."""
        self.stop.set()
        self._wait_builder()
        if self.classroom is not None:
            for trainee in self.classroom.trainees.values():
                close_terminals(trainee)
        left = [lab for lab in self.started_labs if lab_dir(lab).exists()]
        with ThreadPoolExecutor(max(1, self.parallel), thread_name_prefix="down") as pool:
            list(pool.map(_take_down, left))
        self.poller.shutdown(wait=False, cancel_futures=True)
        return left

    # --- one trainee's attempt -----------------------------------------------------------
    def ask(self, trainee: Trainee, op: str, timeout: float = 30.0, **args: Any) -> Any:
        if trainee.lab_state != "up":
            raise LabError("your lab is not running", hint="ask your instructor")
        return control.request(trainee.lab, op, timeout=timeout, **args)

    def hint(self, trainee: Trainee) -> dict[str, Any]:
        hint = self.ask(trainee, "hint")
        trainee.shown_hints.append(hint)
        return hint

    def submit(self, trainee: Trainee, cause: str, node: str) -> str:
        """A diagnosis; the answer is "recorded" (or right/wrong with immediate feedback)."""
        get_cause(cause)
        if node not in trainee.nodes:
            raise LabError(f"unknown node '{node[:40]}'")
        answer = submit_answer(self.ask(trainee, "submit", cause=cause, node=node))
        trainee.answers.append({"cause": cause, "node": node, "answer": answer})
        return answer

    def finish(self, trainee: Trainee) -> dict[str, Any]:
        """Score the attempt (its record goes to the results directory); the trainee's
        terminals close."""
        with self.lock:
            if trainee.attempt != "open":
                raise LabError("the attempt is already finished" if trainee.attempt == "scored"
                               else "the attempt is not open")
            trainee.attempt = "scoring"
        self.on_change()
        try:
            scored = self.ask(trainee, "score", timeout=SCORE_TIMEOUT,
                              results=str(results_root()))
        except LabError:
            trainee.attempt = "open"
            raise
        trainee.score, trainee.attempt = scored["json"], "scored"
        close_terminals(trainee)
        self.on_change()
        return scored["json"]

    # --- following the attempts --------------------------------------------------------
    def poll(self) -> None:
        """Ask every running lab's supervisor for its live view (in parallel)."""
        room = self.classroom
        if room is None:
            return
        trainees = [t for t in room.trainees.values() if t.lab_state == "up"]
        list(self.poller.map(self._poll_one, trainees))

    def _poll_one(self, trainee: Trainee) -> None:
        try:
            live = control.request(trainee.lab, "live", timeout=POLL_TIMEOUT, detail=False)
        except LabError as e:
            if trainee.lab_state != "up":
                return  # being taken down by the server itself
            if lifecycle.phase(trainee.lab) in ("dead", "stopping") or not lab_dir(
                    trainee.lab).exists():
                trainee.lab_state, trainee.error = "down", "the lab went down"
                close_terminals(trainee)
            else:
                trainee.error = e.message
            return
        trainee.live, trainee.error = live, ""
        if live["scored"] and trainee.attempt != "scored":
            # scored from inside a node (`lab score` in a terminal)
            trainee.score, trainee.attempt = live["score"], "scored"
            close_terminals(trainee)

    def detail(self, trainee: Trainee) -> dict[str, Any]:
        """The live view with every command (the instructor's trainee panel); once the
        lab is down, the same view of the attempt's record."""
        if trainee.lab_state == "up":
            return control.request(trainee.lab, "live", timeout=POLL_TIMEOUT, detail=True)
        attempt = _record(trainee)
        if attempt is None:
            return dict(trainee.live or {}, commands=[])
        assert self.classroom is not None
        _, scenario = load(str(self.classroom.path))
        return live_view(attempt, scenario.accept, scenario.title, attempt.score is not None)

    def export(self) -> dict[str, Any]:
        """The class as JSON: every trainee's line, commands, hints, graded submissions
        and score report."""
        room = self.classroom
        if room is None:
            return {}
        self.poll()
        out = {k: v for k, v in room.snapshot().items() if k != "trainees"}
        out["trainees"] = []
        for trainee in room.trainees.values():
            try:
                view = self.detail(trainee)
            except LabError:
                view = {}
            out["trainees"].append(trainee.row() | {
                "commands": view.get("commands", []), "hint_times": view.get("hints", []),
                "report": trainee.score})
        return out


def _take_down(lab: str) -> bool:
    """Down a lab, whatever stands in the way; whether it is gone."""
    try:
        take_down(lab)
    except Exception:
        log.exception("taking lab %s down", lab)
    return not lab_dir(lab).exists()


def close_terminals(trainee: Trainee) -> None:
    for terminal in trainee.terminals.copy():  # one call: safe while the loop adds one
        terminal.stop()


def _record(trainee: Trainee):
    """The attempt record a scored trainee left in the results directory, if any."""
    from lab import results
    from lab.scoring.attempt import load as load_record

    for row in results.rows(results_root(), trainee=trainee.name):
        if row.lab == trainee.lab:
            return load_record(Path(row.path))
    return None


def _topology(lab: str):
    """The topology a lab was built from, as its supervisor has it."""
    return load_topology(lab_dir(lab) / "topology.yaml")
