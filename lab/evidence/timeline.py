"""A timeline from a lab's logs: every line with a time, in time order, with its node and log.

Pure functions on text. The logs the lab writes have three time formats, as their real
counterparts do: syslog's ``Nov 30 22:10:43`` (mail.log, no year: the bundle's year is
assumed), BIND's ``30-Nov-2026 22:10:43.123`` (named.log) and ISO 8601
``2026-11-30T22:10:43`` (the firewall's connection, alert and error logs).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

_SYSLOG = re.compile(r"^(?P<t>[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d) (?P<rest>.*)$")
_BIND = re.compile(r"^(?P<t>\d\d-[A-Z][a-z]{2}-\d{4} \d\d:\d\d:\d\d)(\.\d+)? (?P<rest>.*)$")
_ISO = re.compile(r"^(?P<t>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?\S* (?P<rest>.*)$")


@dataclass(frozen=True, order=True)
class Event:
    when: datetime
    node: str
    log: str  # the log file, as the node sees it
    text: str  # the line without its time stamp


def parse_time(line: str, year: int) -> tuple[datetime, str] | None:
    """The time a log line starts with and the rest of it; None for a line without one."""
    m = _ISO.match(line)
    if m:
        return datetime.strptime(m.group("t"), "%Y-%m-%dT%H:%M:%S"), m.group("rest")
    m = _BIND.match(line)
    if m:
        return datetime.strptime(m.group("t"), "%d-%b-%Y %H:%M:%S"), m.group("rest")
    m = _SYSLOG.match(line)
    if m:
        when = datetime.strptime(f"{year} {m.group('t')}", "%Y %b %d %H:%M:%S")
        return when, m.group("rest")
    return None


def events(node: str, log: str, text: str, year: int) -> list[Event]:
    """The timed lines of one log."""
    out = []
    for line in text.splitlines():
        found = parse_time(line, year)
        if found is not None:
            out.append(Event(found[0], node, log, found[1]))
    return out


def timeline(logs: list[tuple[str, str, str]], year: int, limit: int) -> list[Event]:
    """The last ``limit`` events of every ``(node, log, text)``, oldest first (lines of
    the same second keep their log's order)."""
    merged = [e for node, log, text in logs for e in events(node, log, text, year)]
    merged.sort(key=lambda e: e.when)  # stable: one log's lines keep their order
    return merged[-limit:] if limit else merged
