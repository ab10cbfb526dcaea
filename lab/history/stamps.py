"""The time stamps at the start of the lab's log lines, read and written back.

Three formats, each written by the service that owns the log (these use their
formatters): syslog's for mail.log (``Nov  5 16:50:01``, no year), BIND's for named.log
(``05-Nov-2026 16:50:01.123``), ISO for the firewall's logs (``2026-11-05T16:50:01``).
The replay moves the lines written before it back in time; the trace checks read when a
line was written.
"""
from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from lab.protocols.dnszones import NAMED_LOG, bind_time
from lab.protocols.fwlog import CONN_LOG, ERROR_LOG, timestamp
from lab.protocols.maillog import syslog_time
from lab.services.alerts import ALERT_LOG
from lab.services.mta import MAIL_LOG

MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


@dataclass(frozen=True)
class Stamp:
    """One format: how a line starts, what time that is, and how to write a time."""

    pattern: re.Pattern[str]
    read: Callable[[re.Match[str], datetime], datetime]  # (match, now) -> local time
    write: Callable[[datetime], str]

    def when(self, line: str, now: datetime) -> datetime | None:
        """The local (naive) time ``line`` was written, or None if it has no stamp."""
        m = self.pattern.match(line)
        return self.read(m, now) if m else None

    def shifted(self, line: str, seconds: float, now: datetime) -> str:
        """``line`` with its stamp moved ``seconds`` back (unchanged without a stamp)."""
        m = self.pattern.match(line)
        if m is None:
            return line
        moved = datetime.fromtimestamp(self.read(m, now).timestamp() - seconds)
        return self.write(moved) + line[m.end():]


def _syslog(m: re.Match[str], now: datetime) -> datetime:
    month = MONTHS.index(m.group(1)) + 1
    when = datetime(now.year, month, int(m.group(2)), *map(int, m.group(3, 4, 5)))
    # no year in syslog's stamp: a date ahead of now is last year's
    return when.replace(year=now.year - 1) if when > now + timedelta(days=1) else when


def _bind(m: re.Match[str], _now: datetime) -> datetime:
    day, month, year = int(m.group(1)), MONTHS.index(m.group(2)) + 1, int(m.group(3))
    return datetime(year, month, day, *map(int, m.group(4, 5, 6)), int(m.group(7)) * 1000)


def _iso(m: re.Match[str], _now: datetime) -> datetime:
    return datetime(*map(int, m.groups()))


SYSLOG = Stamp(re.compile(r"([A-Z][a-z]{2}) ([ \d]\d) (\d\d):(\d\d):(\d\d)"), _syslog,
               syslog_time)
BIND = Stamp(re.compile(r"(\d\d)-([A-Z][a-z]{2})-(\d{4}) (\d\d):(\d\d):(\d\d)\.(\d{3})"),
             _bind, bind_time)
ISO = Stamp(re.compile(r"(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)"), _iso,
            lambda when: timestamp(when.timestamp()))

# every log a lab's services write, as a node sees it, with its format
LOGS: dict[str, Stamp] = {MAIL_LOG: SYSLOG, NAMED_LOG: BIND, CONN_LOG: ISO, ERROR_LOG: ISO,
                          ALERT_LOG: ISO}
