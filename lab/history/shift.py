"""Moving what a lab recorded before a replay back in time, before the replay's window.

The replay sets the lab's clock back by the window (the trouble started "this morning")
and runs the window forward; what the lab wrote before that (services starting, zones
loaded, the background mail since `lab up`) happened, in the ticket's story, before the
window. So its time stamps move back by the window too: each log line's stamp, each
queued message's arrival and next attempt, each spooled alert's times. The files stay in
time order and nothing is dated after the trouble began. Mailboxes keep their messages as
they are (what a user already read is not rewritten).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path

from lab.history.stamps import LOGS
from lab.protocols import mailq
from lab.protocols.node import NodeContext
from lab.services.alerts import SpoolError, read_alert, spooled_ids, write_envelope


def shift_past(nodes: list[NodeContext], seconds: float) -> int:
    """Move every record of ``nodes`` back by ``seconds``; returns how many moved."""
    now = datetime.now()
    moved = 0
    for node in nodes:
        for log, stamp in LOGS.items():
            moved += _shift_log(node.path(log),
                                lambda line, s=stamp: s.shifted(line, seconds, now))
        moved += _shift_queue(mailq.spool_path(node.root), seconds)
        moved += _shift_alerts(node.root, seconds)
    return moved


def _shift_log(path: Path, shift: Callable[[str], str]) -> int:
    try:
        text = path.read_text(encoding="utf-8", errors="surrogateescape")
    except FileNotFoundError:
        return 0
    lines = text.splitlines(keepends=True)
    path.write_text("".join(shift(line) for line in lines), encoding="utf-8",
                    errors="surrogateescape")
    return len(lines)


def _shift_queue(spool: Path, seconds: float) -> int:
    moved = 0
    for entry in mailq.list_entries(spool):
        path = spool / entry.queue / entry.queue_id
        try:
            entry, message = mailq.read_entry(path)
        except (OSError, ValueError):
            continue
        entry.arrival -= seconds
        if entry.next_attempt:
            entry.next_attempt -= seconds
        mailq.write_entry(spool, entry, message)
        moved += 1
    return moved


def _shift_alerts(root: Path, seconds: float) -> int:
    moved = 0
    back = timedelta(seconds=seconds)
    for alert_id in spooled_ids(root):
        try:
            envelope, _ = read_alert(root, alert_id)
        except (OSError, SpoolError):
            continue
        last = envelope.last_attempt - back if envelope.last_attempt else None
        write_envelope(root, replace(envelope, created=envelope.created - back,
                                     last_attempt=last))
        moved += 1
    return moved
