"""Postfix's words: mail.log lines and SMTP replies, as pure functions (golden-tested).

Reading the mail log is part of what the lab teaches, so the MTA writes it the way
Postfix does; these formatters hold that wording in one place.
"""
from __future__ import annotations

import re
from datetime import datetime


def syslog_line(when: datetime, host: str, program: str, pid: int, message: str) -> str:
    """``Nov 25 16:50:01 mx postfix/smtpd[4242]: message`` (day padded like syslog)."""
    return f"{when:%b} {when.day:2d} {when:%H:%M:%S} {host} postfix/{program}[{pid}]: {message}"


def client_name(ip: str) -> str:
    """Postfix's client label; the lab does no reverse lookups, so always ``unknown``."""
    return f"unknown[{ip}]"


def format_delay(seconds: float) -> str:
    """Postfix-style delay: two decimals under 1 s, one under 10 s, whole seconds above."""
    seconds = max(0.0, seconds)
    if seconds < 1:
        text = f"{seconds:.2f}"
    elif seconds < 10:
        text = f"{seconds:.1f}"
    else:
        return str(int(seconds))
    return text.rstrip("0").rstrip(".") or "0"


def log_connect(ip: str) -> str:
    return f"connect from {client_name(ip)}"


def log_disconnect(ip: str, counts: dict[str, tuple[int, int]]) -> str:
    """``disconnect from unknown[ip] helo=1 mail=1 rcpt=0/1 quit=1 commands=3/4``."""
    order = ["helo", "ehlo", "mail", "rcpt", "data", "rset", "noop", "vrfy", "quit", "unknown"]
    names = sorted(counts, key=lambda n: (order.index(n) if n in order else 99, n))
    parts = []
    ok_total = all_total = 0
    for name in names:
        ok, total = counts[name]
        ok_total += ok
        all_total += total
        parts.append(f"{name}={ok}" if ok == total else f"{name}={ok}/{total}")
    if all_total:
        parts.append(
            f"commands={ok_total}" if ok_total == all_total else f"commands={ok_total}/{all_total}"
        )
    return " ".join([f"disconnect from {client_name(ip)}"] + parts)


def log_lost(ip: str, after: str, timeout: bool = False) -> str:
    what = "timeout" if timeout else "lost connection"
    return f"{what} after {after} from {client_name(ip)}"


def log_client(queue_id: str, ip: str) -> str:
    return f"{queue_id}: client={client_name(ip)}"


def log_message_id(queue_id: str, message_id: str) -> str:
    return f"{queue_id}: message-id={message_id}"


def log_queued(queue_id: str, sender: str, size: int, nrcpt: int) -> str:
    return f"{queue_id}: from=<{sender}>, size={size}, nrcpt={nrcpt} (queue active)"


def log_delivery(
    queue_id: str, rcpt: str, relay: str, delay: float, dsn: str, status: str, detail: str
) -> str:
    """``QID: to=<r>, relay=local, delay=0.01, dsn=2.0.0, status=sent (delivered to mailbox)``."""
    return (
        f"{queue_id}: to=<{rcpt}>, relay={relay}, delay={format_delay(delay)}, dsn={dsn}, "
        f"status={status} ({detail})"
    )


def log_reject(ip: str, reply: str, sender: str, rcpt: str, proto: str, helo: str) -> str:
    """``NOQUEUE: reject: RCPT from unknown[ip]: 554 5.7.1 <r>: Relay access denied; ...``."""
    return (
        f"NOQUEUE: reject: RCPT from {client_name(ip)}: {reply}; from=<{sender}> to=<{rcpt}> "
        f"proto={proto} helo=<{helo}>"
    )


def log_removed(queue_id: str) -> str:
    return f"{queue_id}: removed"


def log_expired(queue_id: str, sender: str) -> str:
    return f"{queue_id}: from=<{sender}>, status=expired, returned to sender"


def log_bounce(queue_id: str, new_queue_id: str) -> str:
    return f"{queue_id}: sender non-delivery notification: {new_queue_id}"


# aiosmtpd's own replies, in the words Postfix uses for the same situation.
_REPLIES = {
    "500 Error: bad syntax": "500 5.5.2 Error: bad syntax",
    "500 Command line too long": "500 5.5.2 Error: line too long",
    "500 Line too long (see RFC5321 4.5.3.1.6)": "500 5.5.2 Error: line too long",
    "503 Error: send HELO first": "503 5.5.1 Error: send HELO/EHLO first",
    "503 Error: send EHLO first": "503 5.5.1 Error: send HELO/EHLO first",
    "503 Error: need MAIL command": "503 5.5.1 Error: need MAIL command",
    "503 Error: nested MAIL command": "503 5.5.1 Error: nested MAIL command",
    "503 Error: need RCPT command": "554 5.5.1 Error: no valid recipients",
    "552 Error: Too much mail data": "552 5.3.4 Error: message file too big",
    "552 Error: message size exceeds fixed maximum message size":
        "552 5.3.4 Message size exceeds fixed limit",
    "221 Bye": "221 2.0.0 Bye",
    "250 OK": "250 2.0.0 Ok",
    "502 EXPN not implemented": "502 5.5.1 Error: command not implemented",
}
UNRECOGNISED = re.compile(r'^500 Error: command ".*" not recognized$')


def postfix_reply(status: str) -> str:
    """Map one aiosmtpd reply to Postfix's text; replies it does not know pass through."""
    if UNRECOGNISED.match(status):
        return "500 5.5.2 Error: command not recognized"
    if status.startswith("502 5.5.1 Too many unrecognized commands"):
        return "421 4.7.0 Error: too many errors"
    if status.startswith("501 Syntax: "):
        return "501 5.5.4 " + status[4:]
    return _REPLIES.get(status, status)
