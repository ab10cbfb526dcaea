"""Collecting a lab's evidence, inside its supervisor: packet captures of every segment for a
while, and what each node holds that a postmortem needs (its logs, resolv.conf, zone
files, mail queue; the firewall's live ruleset).

Captures run tcpdump in each segment's own namespace, on the segment's bridge, writing to a
pipe that the supervisor saves, so the files are written in the host's view, whatever a
node can see. Everything is bounded: the capture's seconds, packets per segment, bytes per
log (the newest are kept). Nothing here reads the attempt's records: the bundle holds what
the lab's nodes show, never the answer key.
"""
from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lab.evidence import MAX_CAPTURE, MAX_PACKETS
from lab.model.topology import Topology
from lab.protocols.mailq import format_mailq, list_entries, spool_path
from lab.protocols.node import NodeContext

SNAPLEN = 1600  # whole Ethernet frames of the lab's MTU
MAX_BYTES = 1_000_000  # per copied file: the newest part of a longer log
MAX_FILES = 64  # per node and directory
COMMAND_TIMEOUT = 10.0


@dataclass
class LabView:
    """What the collector may touch: the topology, each node's files (``contexts``) and
    namespaces (``host_pids``), each segment's namespace (``segment_pids``)."""

    topo: Topology
    contexts: dict[str, NodeContext]
    host_pids: dict[str, int]
    segment_pids: dict[str, int]
    firewall: str | None = None


async def collect(view: LabView, out: Path, capture: float) -> dict[str, Any]:
    """Write the evidence under ``out`` (an existing, empty directory): the captures first,
    then the nodes' files as they are at the end of it; the files written (relative
    paths) and the segments captured."""
    capture = max(0.0, min(float(capture), MAX_CAPTURE))
    written: list[str] = []
    tcpdumps = await _start_captures(view, out, written) if capture else []
    try:
        await asyncio.sleep(capture)
    finally:
        await _stop_captures(tcpdumps)
    # the files as they are at the end of the capture: what happened during it is logged
    written += await asyncio.to_thread(_copy_files, view, out)
    written += await _firewall(view, out)
    return {"files": sorted(written), "capture": capture,
            "segments": sorted(view.segment_pids) if capture else []}


# --- packet captures ---------------------------------------------------------------------------


async def _start_captures(view: LabView, out: Path, written: list[str]
                          ) -> list[asyncio.subprocess.Process]:
    (out / "pcaps").mkdir(mode=0o700)
    procs = []
    for segment, pid in sorted(view.segment_pids.items()):
        rel = f"pcaps/{segment}.pcap"
        with (out / rel).open("wb") as sink:  # a new local file: no wait worth a thread
            procs.append(await asyncio.create_subprocess_exec(
                "mnexec", "-a", str(pid), "tcpdump", "-n", "-U", "-i", segment,
                "-s", str(SNAPLEN), "-c", str(MAX_PACKETS), "-w", "-",
                stdout=sink, stderr=asyncio.subprocess.DEVNULL,
                stdin=asyncio.subprocess.DEVNULL))
        written.append(rel)
    await asyncio.sleep(0.3)  # tcpdump opens its socket before the window counts
    return procs


async def _stop_captures(procs: list[asyncio.subprocess.Process]) -> None:
    for proc in procs:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)  # tcpdump flushes what it has
    for proc in procs:
        try:
            await asyncio.wait_for(proc.wait(), 5)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()


# --- files of the nodes ---------------------------------------------------------------------------


def _copy_files(view: LabView, out: Path) -> list[str]:
    written: list[str] = []
    for name, ctx in view.contexts.items():
        base = f"nodes/{name}"
        written += _copy(ctx.path("/etc/resolv.conf"), out, f"{base}/resolv.conf")
        written += _copy_tree(ctx.path("/var/log"), out, f"{base}/log")
        node = view.topo.nodes[name]
        if "dns" in node.services:
            written += _copy_tree(ctx.path("/etc/bind"), out, f"{base}/bind")
        if "smtp" in node.services:
            queue = format_mailq(list_entries(spool_path(ctx.root)))
            written += _write(out, f"{base}/mailq.txt", queue)
    return written


def _copy_tree(src: Path, out: Path, rel: str) -> list[str]:
    if not src.is_dir():
        return []
    files = sorted(p for p in src.rglob("*") if p.is_file() and not p.is_symlink())
    written: list[str] = []
    for path in files[:MAX_FILES]:
        written += _copy(path, out, f"{rel}/{path.relative_to(src)}")
    return written


def _copy(src: Path, out: Path, rel: str) -> list[str]:
    """The newest MAX_BYTES of ``src`` at ``out/rel``; nothing if it cannot be read."""
    try:
        with open(src, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size > MAX_BYTES:
                f.seek(size - MAX_BYTES)
                f.readline()  # start at a whole line
            data = f.read(MAX_BYTES)
    except OSError:
        return []
    return _write(out, rel, data)


def _write(out: Path, rel: str, data: str | bytes) -> list[str]:
    target = out / rel
    target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    target.write_bytes(data.encode() if isinstance(data, str) else data)
    return [rel]


# --- the firewall ---------------------------------------------------------------------------------


async def _firewall(view: LabView, out: Path) -> list[str]:
    """The firewall's live ruleset, as `nft list ruleset` shows it in the node."""
    if view.firewall is None or view.firewall not in view.host_pids:
        return []
    proc = await asyncio.create_subprocess_exec(
        "mnexec", "-a", str(view.host_pids[view.firewall]), "nft", "list", "ruleset",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        stdin=asyncio.subprocess.DEVNULL)
    try:
        text, _ = await asyncio.wait_for(proc.communicate(), COMMAND_TIMEOUT)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        text = b"(nft list ruleset did not answer)\n"
    return _write(out, f"nodes/{view.firewall}/ruleset.nft", text)
