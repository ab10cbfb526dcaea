"""Moving what a lab recorded before a replay back in time, before the replay's window.

The replay sets the lab's clock back by the window (the trouble started "this morning")
and runs the window forward; what the lab wrote before that (services starting, zones
loaded, the background mail since `lab up`) happened, in the ticket's story, before the
window. So its time stamps move back by the window too: each log line's stamp, each
queued message's arrival and next attempt, each spooled alert's times, and in the
mailboxes each message's delivery (its mbox ``From `` line) with the ``Date:`` and
``Received:`` times of its header. The files stay in time order and nothing is dated
after the trouble began: a message from outside delivered a minute before `lab start`
would otherwise say mail arrived after the ticket's "since".
"""
from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta
from email.utils import format_datetime, parsedate_to_datetime
from pathlib import Path

from lab.history.stamps import LOGS
from lab.protocols import mailq
from lab.protocols.node import NodeContext
from lab.services.alerts import SpoolError, read_alert, spooled_ids, write_envelope
from lab.services.mta import MAIL_DIR


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
        moved += _shift_mailboxes(node.path(MAIL_DIR), seconds)
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


_FROM_ = re.compile(rb"^(From \S+ +)(\w{3} \w{3} [ \d]\d \d\d:\d\d:\d\d \d{4})$")
_RFC2822 = re.compile(rb"(?:[A-Z][a-z]{2}, )?\d{1,2} [A-Z][a-z]{2} \d{4} \d\d:\d\d:\d\d [+-]\d{4}")


def _shift_mailboxes(mail_dir: Path, seconds: float) -> int:
    """Move each message of each mbox in ``mail_dir`` back: its From_ line, and the
    ``Date:`` and ``Received:`` times of its header (not its body's). Returns how many."""
    try:
        boxes = [p for p in mail_dir.iterdir() if p.is_file() and not p.name.endswith(".lock")]
    except FileNotFoundError:
        return 0
    moved = 0
    for box in boxes:
        lines, header = box.read_bytes().splitlines(keepends=True), False
        for i, line in enumerate(lines):
            m = _FROM_.match(line.rstrip(b"\n"))
            if m:
                when = datetime.strptime(m.group(2).decode(), "%a %b %d %H:%M:%S %Y")
                stamp = time.asctime((when - timedelta(seconds=seconds)).timetuple())
                lines[i], header = m.group(1) + stamp.encode() + b"\n", True
                moved += 1
            elif header and not line.strip():
                header = False
            elif header and (line[:1] in b" \t" or line[:5].lower() in (b"date:", b"recei")):
                lines[i] = _RFC2822.sub(lambda d: _earlier(d.group(0), seconds), line)
        box.write_bytes(b"".join(lines))
    return moved


def _earlier(rfc2822: bytes, seconds: float) -> bytes:
    when = parsedate_to_datetime(rfc2822.decode()) - timedelta(seconds=seconds)
    return format_datetime(when).encode()
