"""``postqueue`` and ``sendmail -q`` inside a node: flush or list the mail queue.

    postqueue -f        deliver everything in the queue now (returns at once)
    postqueue -p        list the queue (as mailq)
    sendmail -q         the same as postqueue -f
    sendmail -bp        the same as postqueue -p

As Postfix's, flushing writes a request to the queue manager's FIFO
(``/var/spool/postfix/public/qmgr``); when no queue manager reads it the mail system is
down, and the command says so. ``--root DIR`` prefixes paths (tests).
"""
from __future__ import annotations

import argparse
import errno
import os
import sys
from pathlib import Path

from lab.protocols import mailq
from lab.protocols.mtaqueue import TRIGGER_FIFO

EX_USAGE, EX_UNAVAILABLE, EX_TEMPFAIL = 64, 69, 75


def flush(root: Path, prog: str) -> int:
    path = root / TRIGGER_FIFO.lstrip("/")
    try:
        fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
    except OSError as e:
        if e.errno in (errno.ENXIO, errno.ENOENT):
            print(f"{prog}: fatal: Cannot flush mail queue - mail system is down",
                  file=sys.stderr)
            return EX_TEMPFAIL
        raise
    try:
        os.write(fd, b"F")
    finally:
        os.close(fd)
    return 0


def main(argv: list[str] | None = None, prog: str = "postqueue") -> int:
    parser = argparse.ArgumentParser(prog=prog, description="flush or list the mail queue")
    if prog == "sendmail":
        parser.add_argument("-q", dest="flush", action="store_true", help="flush the queue")
        parser.add_argument("-bp", dest="list", action="store_true", help="list the queue")
    else:
        parser.add_argument("-f", dest="flush", action="store_true", help="flush the queue")
        parser.add_argument("-p", dest="list", action="store_true", help="list the queue")
    parser.add_argument("--root", default="/", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    root = Path(args.root)
    if args.flush == args.list:
        what = "-q or -bp" if prog == "sendmail" else "-f or -p"
        print(f"{prog}: fatal: usage: {prog} {what} (this lab's {prog} only flushes or "
              "lists the queue)", file=sys.stderr)
        return EX_USAGE
    if args.flush:
        return flush(root, prog)
    try:
        sys.stdout.write(mailq.format_mailq(mailq.list_entries(mailq.spool_path(root))))
    except OSError as e:
        print(f"{prog}: fatal: cannot read {mailq.SPOOL}: {e.strerror}", file=sys.stderr)
        return EX_UNAVAILABLE
    return 0


def sendmail_main(argv: list[str] | None = None) -> int:
    return main(argv, prog="sendmail")


if __name__ == "__main__":
    sys.exit(main())
