"""Postfix's words: mail.log lines and SMTP replies, as pure functions (golden-tested).

Reading the mail log is part of what the lab teaches, so the MTA writes it the way
Postfix does; these formatters hold that wording in one place.
"""
from __future__ import annotations

import itertools
import random
import ssl
from datetime import datetime

from lab.protocols.smtpwire import printable


def syslog_time(when: datetime) -> str:
    """``Nov  5 16:50:01``: syslog's time stamp (the day padded, no year)."""
    return f"{when:%b} {when.day:2d} {when:%H:%M:%S}"


def syslog_line(when: datetime, host: str, program: str, pid: int, message: str) -> str:
    """``Nov 25 16:50:01 mx postfix/smtpd[4242]: message`` (day padded like syslog;
    control bytes and anything but printable ASCII become ``?``, as Postfix logs them)."""
    return f"{syslog_time(when)} {host} postfix/{program}[{pid}]: {printable(message)}"


class PseudoPids:
    """Process ids for a node's Postfix programs, as ``ps`` would show them: the
    long-running daemons (qmgr, cleanup, bounce, pickup) keep one each while the
    service runs, every smtpd session and every local or smtp delivery is a process
    of its own. They start at a random point per node, so two nodes differ."""

    LONG_RUNNING = ("master", "qmgr", "cleanup", "bounce", "pickup")

    def __init__(self, seed: str) -> None:
        start = random.Random(seed).randrange(1000, 30000)
        self._next = itertools.count(start)
        self._fixed = {name: next(self._next) for name in self.LONG_RUNNING}

    def of(self, program: str) -> int:
        """The pid of a long-running program, or a new one for a one-off process."""
        return self._fixed.get(program) or next(self._next)

    def new(self) -> int:
        return next(self._next)


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
    order = ["helo", "ehlo", "starttls", "auth", "mail", "rcpt", "data", "rset", "noop", "vrfy",
             "quit", "unknown"]
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
    queue_id: str, rcpt: str, relay: str, delay: float, dsn: str, status: str, detail: str,
    delays: tuple[float, float, float, float] | None = None,
) -> str:
    """``QID: to=<r>, relay=local, delay=0.01, delays=0/0/0/0.01, dsn=2.0.0, status=sent
    (delivered to mailbox)``. ``delays`` are Postfix's a/b/c/d: before the queue
    manager, in the queue, connection setup (DNS, HELO, TLS), transmission."""
    parts = f"delay={format_delay(delay)}, "
    if delays is not None:
        parts += "delays=" + "/".join(format_delay(d) for d in delays) + ", "
    return f"{queue_id}: to=<{rcpt}>, relay={relay}, {parts}dsn={dsn}, status={status} ({detail})"


def tls_summary(trust: str, direction: str, peer: str, ssl_object: ssl.SSLObject | None) -> str:
    """``Anonymous TLS connection established from unknown[ip]: TLSv1.3 with cipher
    TLS_AES_256_GCM_SHA384 (256/256 bits)`` (``trust``: Anonymous, Untrusted, Trusted,
    Verified; ``direction``: from (server) or to (client))."""
    if ssl_object is None:
        return f"{trust} TLS connection established {direction} {peer}"
    name, _version, bits = ssl_object.cipher() or ("unknown", "", 0)
    return (f"{trust} TLS connection established {direction} {peer}: {ssl_object.version()} "
            f"with cipher {name} ({bits}/{bits} bits)")


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
