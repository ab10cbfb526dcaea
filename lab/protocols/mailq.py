"""The mail queue as files, and ``mailq``: list it the way Postfix's mailq does.

A queued message is one file ``/var/spool/postfix/<queue>/<QUEUE ID>`` (queue
``active`` while being delivered, ``deferred`` after a failed attempt): a JSON envelope
on the first line, then the message exactly as received. The files outlive the service,
so a restart finds its queue again, and a trainee can look at them from the node.

Run inside a node: ``python -m lab.protocols.mailq`` (``--root DIR`` prefixes paths).
"""
from __future__ import annotations

import argparse
import json
import os
import secrets
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

SPOOL = "/var/spool/postfix"
QUEUES = ("active", "deferred")

# Postfix showq_compat.c short-queue-id formats.
_STRING_FORMAT = "{:<11} {:>7} {:<20} {}"
_HEADINGS = ("-Queue ID-", "--Size--", "----Arrival Time----", "-Sender/Recipient-------")


@dataclass
class QueueEntry:
    """The envelope of one queued message and its delivery state."""

    queue_id: str
    sender: str
    recipients: list[str]
    arrival: float
    size: int
    client: str = "local"
    queue: str = "active"
    attempts: int = 0
    next_attempt: float = 0.0
    # recipient -> why the last attempt failed (Postfix's "defer" log)
    reasons: dict[str, str] = field(default_factory=dict)

    def header(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True).encode() + b"\n"


def spool_path(root: Path) -> Path:
    """The host path of a node's Postfix spool, given the node's root directory."""
    return Path(root) / SPOOL.lstrip("/")


def new_queue_id(spool: Path) -> str:
    """A Postfix-style short queue id (10 hex digits) not used by any queued file."""
    while True:
        qid = secrets.token_hex(5).upper()
        if not any((spool / q / qid).exists() for q in QUEUES):
            return qid


def write_entry(spool: Path, entry: QueueEntry, message: bytes) -> Path:
    """Store (or replace) ``entry`` in its queue, atomically; drop it from other queues.

    Written to a temporary file and renamed, so ``mailq`` and the queue manager never read
    half a file. Not fsynced, unlike Postfix's queue files: a lab's queue lives and dies
    with the lab, and the flush to disk was most of the cost of receiving a message
    (bench/smtp_bench.py) where the lab state is not on tmpfs.
    """
    tmp_dir = spool / "tmp"
    tmp_dir.mkdir(parents=True, exist_ok=True)
    target_dir = spool / entry.queue
    target_dir.mkdir(parents=True, exist_ok=True)
    tmp = tmp_dir / f"{entry.queue_id}.{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(entry.header())
        f.write(message)
    target = target_dir / entry.queue_id
    os.replace(tmp, target)
    for q in QUEUES:
        if q != entry.queue:
            (spool / q / entry.queue_id).unlink(missing_ok=True)
    return target


def read_entry(path: Path) -> tuple[QueueEntry, bytes]:
    """One queue file: its envelope and its message. Raises ValueError if corrupt."""
    data = Path(path).read_bytes()
    head, sep, message = data.partition(b"\n")
    if not sep:
        raise ValueError(f"{path}: no envelope line")
    try:
        fields = json.loads(head)
        entry = QueueEntry(**fields)
    except (ValueError, TypeError) as e:
        raise ValueError(f"{path}: bad envelope: {e}") from None
    entry.queue = Path(path).parent.name
    return entry, message


def read_header(path: Path) -> QueueEntry:
    """Only the envelope of a queue file (cheap: the message is not read)."""
    with open(path, "rb") as f:
        head = f.readline()
    if not head.endswith(b"\n"):
        raise ValueError(f"{path}: no envelope line")
    try:
        entry = QueueEntry(**json.loads(head))
    except (ValueError, TypeError) as e:
        raise ValueError(f"{path}: bad envelope: {e}") from None
    entry.queue = Path(path).parent.name
    return entry


def list_entries(spool: Path) -> list[QueueEntry]:
    """Every readable queued message, oldest first (corrupt files are skipped)."""
    out = []
    for q in QUEUES:
        d = spool / q
        if not d.is_dir():
            continue
        for p in d.iterdir():
            if not p.is_file():
                continue
            try:
                out.append(read_header(p))
            except (OSError, ValueError):
                continue
    return sorted(out, key=lambda e: (e.arrival, e.queue_id))


def remove_entry(spool: Path, queue_id: str) -> None:
    for q in QUEUES:
        (spool / q / queue_id).unlink(missing_ok=True)


def format_mailq(entries: list[QueueEntry]) -> str:
    """The listing Postfix's ``mailq`` prints (arrival times in local time)."""
    if not entries:
        return "Mail queue is empty\n"
    lines: list[str] = [_STRING_FORMAT.format(*_HEADINGS)]
    total = 0
    for i, e in enumerate(entries):
        if i:
            lines.append("")
        mark = "*" if e.queue == "active" else " "
        arrival = time.asctime(time.localtime(e.arrival))[:20]
        sender = e.sender or "MAILER-DAEMON"
        lines.append(f"{e.queue_id + mark:<11} {e.size:>7} {arrival:>20.20} {sender}")
        shown = ""
        for rcpt in e.recipients:
            why = e.reasons.get(rcpt, "")
            if why != shown:
                shown = why
                text = why or "reason unavailable"
                lines.append(" " * max(0, 76 - len(text)) + f"({text})")
            lines.append(_STRING_FORMAT.format("", "", "", rcpt))
        total += e.size
    n = len(entries)
    lines.append("")
    lines.append(f"-- {total // 1024} Kbytes in {n} Request{'' if n == 1 else 's'}.")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mailq", description="list the mail queue")
    parser.add_argument("--root", default="/", help="prefix for the spool path (tests)")
    args = parser.parse_args(argv)
    spool = spool_path(Path(args.root))
    try:
        entries = list_entries(spool)
    except OSError as e:
        print(f"mailq: cannot read {SPOOL}: {e.strerror}", file=sys.stderr)
        return 69  # EX_UNAVAILABLE, as postqueue
    sys.stdout.write(format_mailq(entries))
    return 0


if __name__ == "__main__":
    sys.exit(main())
