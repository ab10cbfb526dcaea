"""How a trainee sees each trace a scenario's ticket promises (``history.traces``).

Each trace is a command a trainee would run on a node named by its role (``mailq`` on
the sender, ``netguard -An`` on the firewall, ``ls`` of the alert spool, ``grep`` in a
log or a mailbox) and a pure judge of its output: None when the trace is there, else
what is missing. The names and what they promise are ``lab.model.history.TRACES``; the
tests run every scenario's promised traces through `lab exec` right after `lab start`.

"Throughout the window" means at least two lines, the oldest of them from the window's
first half: the trouble shows from the time the ticket says, not only from the last
minutes.
"""
from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from lab.history.stamps import BIND, ISO, SYSLOG, Stamp
from lab.model.roles import Roles
from lab.protocols.dnszones import NAMED_LOG
from lab.services.alerts import ALERT_LOG, ENVELOPE_DIR
from lab.services.mta import MAIL_LOG


@dataclass(frozen=True)
class Seen:
    """What a judge knows besides the output: the roles, the time the trainee looked
    (local, naive) and the history window in seconds."""

    roles: Roles
    now: datetime
    window: float


Judge = Callable[[str, Seen], "str | None"]
Recipients = Callable[[Seen], Callable[[str], bool]]

STOPPED_SLACK = 900.0  # seconds after the window's start that still count as its start


@dataclass(frozen=True)
class View:
    """One trace: where a trainee looks (a role naming the node), with what command,
    and how its output is judged."""

    role: str
    argv: tuple[str, ...]
    judge: Judge


# --- reading what the tools print -----------------------------------------------------------


def queued(mailq_text: str) -> list[tuple[str, str]]:
    """(recipient, reason) of every deferred recipient ``mailq`` lists."""
    out, reason = [], ""
    for line in mailq_text.splitlines():
        m = re.fullmatch(r"\s*\((.*)\)", line)
        if m:
            reason = m.group(1)
            continue
        m = re.fullmatch(r"\s{20,}(\S+@\S+)", line)
        if m and reason:
            out.append((m.group(1).lower(), reason))
    return out


def _in(domain: str | None) -> Callable[[str], bool]:
    return lambda address: domain is not None and address.endswith("@" + domain.lower())


def _outside(domain: str | None) -> Callable[[str], bool]:
    return lambda address: domain is not None and not address.endswith("@" + domain.lower())


def _throughout(lines: list[str], stamp: Stamp, seen: Seen, what: str) -> str | None:
    times = [t for t in (stamp.when(line, seen.now) for line in lines) if t is not None]
    if len(times) < 2:
        return f"{what}: {len(times)} line(s)"
    first_half = seen.now - timedelta(seconds=seen.window / 2)
    if min(times) > first_half:
        return f"{what}: the oldest line is from {min(times):%H:%M}, not before {first_half:%H:%M}"
    return None


# --- the judges -----------------------------------------------------------------------------


def _queue(to: Recipients, what: str) -> Judge:
    def judge(text: str, seen: Seen) -> str | None:
        found = [r for r, _ in queued(text) if to(seen)(r)]
        return None if found else f"no deferred mail {what} in the queue"
    return judge


def _bounces(to: Recipients, what: str) -> Judge:
    def judge(text: str, seen: Seen) -> str | None:
        rcpts = re.findall(r"^Final-Recipient: rfc822;\s*(\S+)", text, re.MULTILINE)
        return None if any(to(seen)(r.lower()) for r in rcpts) else f"no bounce {what}"
    return judge


def _log(stamp: Stamp, keep: Callable[[str, Seen], bool], what: str) -> Judge:
    def judge(text: str, seen: Seen) -> str | None:
        return _throughout([ln for ln in text.splitlines() if keep(ln, seen)], stamp, seen, what)
    return judge


def _failed_to(to: Recipients) -> Callable[[str, Seen], bool]:
    def keep(line: str, seen: Seen) -> bool:
        m = re.search(r" to=<([^>]*)>.* status=(deferred|bounced)", line)
        return m is not None and to(seen)(m.group(1).lower())
    return keep


def _arrivals(text: str, seen: Seen) -> list[datetime]:
    """When each message from the sender's domain was delivered, from the mbox From_
    lines (``From a@b  Mon Nov 30 20:33:56 2026``)."""
    times = []
    for m in re.finditer(r"^From (\S+)\s+(\w{3} \w{3} [ \d]\d \d\d:\d\d:\d\d \d{4})$", text,
                         re.MULTILINE):
        if _in(seen.roles.sender_domain)(m.group(1).lower()):
            times.append(datetime.strptime(m.group(2), "%a %b %d %H:%M:%S %Y"))
    return times


def _delivered_from(text: str, seen: Seen) -> str | None:
    lines = [f"{when:%Y-%m-%dT%H:%M:%S}" for when in _arrivals(text, seen)]
    return _throughout(lines, ISO, seen, "messages from the sender's domain")


def _stopped(text: str, seen: Seen) -> str | None:
    """Mail from the sender's domain arrived before the window and not in it. The
    window's start is the ticket's rough "since": a tenth of it (15 minutes at most)
    counts as its start still."""
    times = _arrivals(text, seen)
    start = seen.now - timedelta(seconds=seen.window)
    if not times or min(times) > start:
        return "no message from the sender's domain from before the window"
    edge = start + timedelta(seconds=min(seen.window / 10, STOPPED_SLACK))
    late = [t for t in times if t > edge]
    return f"{len(late)} message(s) from the sender's domain after {edge:%H:%M}" if late else None


def _spooled(text: str, _seen: Seen) -> str | None:
    return None if text.split() else f"{ENVELOPE_DIR} is empty"


def _refused(line: str, seen: Seen) -> bool:
    """A submission refused (NOQUEUE: reject) or a delivery bounced, to an outside address."""
    m = re.search(r" to=<([^>]*)>", line)
    return (m is not None and _not_mail_domain(seen)(m.group(1).lower())
            and ("NOQUEUE: reject" in line or "status=bounced" in line))


def _mail_domain(seen: Seen) -> Callable[[str], bool]:
    return _in(seen.roles.mail_domain)


def _not_mail_domain(seen: Seen) -> Callable[[str], bool]:
    return _outside(seen.roles.mail_domain)


VIEWS: dict[str, View] = {
    "sender-queue": View("sender", ("mailq",), _queue(_mail_domain, "for the mail domain")),
    "sender-bounces": View("sender", ("grep", "-rh", "^Final-Recipient:", "/var/mail"),
                           _bounces(_mail_domain, "for the mail domain")),
    "sender-log": View("sender", ("grep", "status=", MAIL_LOG),
                       _log(SYSLOG, _failed_to(_mail_domain), "failed deliveries")),
    "sender-tls-log": View("sender", ("grep", "TLS connection established to", MAIL_LOG),
                           _log(SYSLOG, lambda ln, s: str(s.roles.mail_host) in ln,
                                "TLS sessions")),
    "server-queue": View("mail_server", ("mailq",),
                         _queue(_not_mail_domain, "for outside addresses")),
    "server-log": View("mail_server", ("grep", "status=", MAIL_LOG),
                       _log(SYSLOG, _failed_to(_not_mail_domain), "failed deliveries")),
    "server-rejects": View("mail_server", ("grep", "NOQUEUE: reject", MAIL_LOG),
                           _log(SYSLOG, lambda ln, s: True, "rejects")),
    "staff-bounces": View("mail_server", ("grep", "-rh", "^Final-Recipient:", "/var/mail"),
                          _bounces(_not_mail_domain, "for outside addresses")),
    "inbound-delivered": View("mail_server", ("grep", "-rh", "^From ", "/var/mail"),
                              _delivered_from),
    "firewall-log": View("firewall", ("netguard", "-An"),
                         _log(ISO, lambda ln, s: True, "connection log")),
    "alert-spool": View("firewall", ("ls", ENVELOPE_DIR), _spooled),
    "alert-log": View("firewall", ("grep", "status=deferred", ALERT_LOG),
                      _log(ISO, lambda ln, s: True, "failed alert deliveries")),
    "resolver-log": View("public_resolver", ("grep", "resolving", NAMED_LOG),
                         _log(BIND, lambda ln, s: True, "failed resolutions")),
    "internal-dns-log": View("internal_dns", ("grep", "resolving", NAMED_LOG),
                             _log(BIND, lambda ln, s: True, "failed resolutions")),
    "relay-queue": View("inbound_relay", ("mailq",), _queue(_mail_domain, "for the mail domain")),
    "relay-log": View("inbound_relay", ("grep", "status=", MAIL_LOG),
                      _log(SYSLOG, _failed_to(_mail_domain), "failed deliveries")),
    "backup-mx-queue": View("backup_mx", ("mailq",), _queue(_mail_domain, "for the mail domain")),
    "backup-mx-log": View("backup_mx", ("grep", "status=", MAIL_LOG),
                          _log(SYSLOG, _failed_to(_mail_domain), "failed deliveries")),
    "inbound-stopped": View("mail_server", ("grep", "-rh", "^From ", "/var/mail"), _stopped),
    "outbound-refused": View("mail_server", ("grep", "-E", "NOQUEUE: reject|status=bounced",
                                             MAIL_LOG),
                             _log(SYSLOG, _refused, "refused mail to outside addresses")),
}


def local_now() -> datetime:
    """The machine's local time, naive, as the logs are written."""
    return datetime.fromtimestamp(time.time())
