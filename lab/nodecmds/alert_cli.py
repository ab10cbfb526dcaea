"""``netguard-alert``: raise a firewall alert, or list the alerts still in the spool.

    netguard-alert "Subject" ["body"]     spool one alert (body "-" reads stdin), print its id
    netguard-alert --list                 id, age, attempts and last error of each alert

Runs inside the firewall node (its own mount namespace), so it writes the same two files
the running alert mailer writes (``/var/spool/mailq/outgoing/smtp/<id>`` and
``/var/spool/mailq/data/<id>``); the mailer picks them up on its next scan. Sender and
recipient come from the mailer's settings (``/etc/netguard/alerts.conf``) unless given.
``--root DIR`` prefixes every path (tests).
"""
from __future__ import annotations

import argparse
import sys
from datetime import datetime
from pathlib import Path

from lab.services.alerts import (
    ENVELOPE_DIR,
    SpoolError,
    append_log,
    log_queued,
    read_alert,
    read_settings,
    spooled_ids,
    write_alert,
)


def format_age(seconds: float) -> str:
    """``42s``, ``3m05s``, ``2h07m``, ``3d04h``."""
    s = max(0, int(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def format_list(root: Path, now: datetime | None = None) -> str:
    """The ``--list`` table: one alert a line, malformed ones flagged."""
    now = now or datetime.now().astimezone()
    rows: list[tuple[str, str, str, str]] = []
    for alert_id in spooled_ids(root):
        try:
            envelope, _ = read_alert(root, alert_id)
        except FileNotFoundError:
            continue
        except (SpoolError, OSError) as e:
            rows.append((alert_id, "-", "-", f"malformed spool file: {e}"))
            continue
        age = format_age((now - envelope.created).total_seconds())
        rows.append((alert_id, age, str(envelope.attempts), envelope.last_error or "-"))
    if not rows:
        return "Alert spool is empty\n"
    width = max(len("ID"), *(len(r[0]) for r in rows))
    lines = [f"{'ID':<{width}}  {'AGE':>7}  {'ATTEMPTS':>8}  LAST ERROR"]
    lines += [f"{i:<{width}}  {a:>7}  {n:>8}  {err}" for i, a, n, err in rows]
    lines.append(f"-- {len(rows)} alert{'' if len(rows) == 1 else 's'} in {ENVELOPE_DIR}")
    return "\n".join(lines) + "\n"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="netguard-alert",
        description="Raise a firewall alert mail, or list the alerts not yet delivered.",
    )
    p.add_argument("subject", nargs="?", help="the alert's subject line")
    p.add_argument("body", nargs="?", default="", help="the alert's text ('-': read stdin)")
    p.add_argument("--list", action="store_true", help="list the spooled alerts")
    p.add_argument("--to", help="recipient (default: the firewall's alert settings)")
    p.add_argument("--from", dest="sender", help="sender (default: the alert settings)")
    p.add_argument("--root", default="/", help=argparse.SUPPRESS)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    root = Path(args.root)
    if args.list:
        if args.subject is not None:
            parser.error("--list takes no subject")
        try:
            sys.stdout.write(format_list(root))
        except OSError as e:
            print(f"netguard-alert: cannot read the spool: {e.strerror or e}", file=sys.stderr)
            return 1
        return 0
    if not args.subject or not args.subject.strip():
        parser.error("a subject is required")
    body = sys.stdin.read() if args.body == "-" else args.body
    settings = read_settings(root)
    sender = args.sender or settings.from_
    recipient = args.to or settings.to
    for what, value in (("--from", sender), ("--to", recipient)):
        if "@" not in value or any(c.isspace() for c in value):
            parser.error(f"{what} {value!r} is not a mail address")
    try:
        alert_id = write_alert(
            root, args.subject, body, sender=sender, recipient=recipient,
            server=settings.mail_server, helo=settings.helo,
        )
        append_log(root, log_queued(alert_id, sender, recipient, args.subject))
    except OSError as e:
        print(f"netguard-alert: cannot write the spool: {e.strerror or e}", file=sys.stderr)
        return 1
    print(alert_id)
    return 0


if __name__ == "__main__":
    sys.exit(main())
