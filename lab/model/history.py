"""A scenario's ``history:`` block: how long the trouble has been going on, and which of
its traces the ticket promises a trainee will find.

``since`` is a duration (``3h``, ``90m``, ``1d12h``) or a time of day (``09:00``: the
last 09:00 at least half an hour ago). At ``lab start`` the lab replays that much of its
ordinary mail traffic under the faults (lab/history/), so that queues, mailboxes, spools
and logs hold what the ticket says. ``traces`` name what the ticket promises, from
``TRACES``; a test per scenario checks each is visible with the trainee's own tools.
"""
from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

DEFAULT_SINCE = "2h"
MAX_SINCE = 7 * 86400
MIN_SINCE_TIME_OF_DAY = 1800  # "since 09:00" at 09:10 means yesterday's 09:00

# Every trace a scenario may promise, with what a trainee finds (docs/history.md).
TRACES: dict[str, str] = {
    "sender-queue": "the outside sender's queue holds mail for the mail domain, deferred "
                    "with the fault's error (mailq on the sender)",
    "sender-bounces": "non-delivery reports about mail to the mail domain sit in the "
                      "outside senders' mailboxes (/var/mail on the sender)",
    "sender-log": "the sender's mail.log shows failed deliveries to the mail domain "
                  "throughout the window",
    "sender-tls-log": "the sender's mail.log shows its TLS sessions with the mail domain's "
                      "server throughout the window",
    "server-queue": "the mail server's queue holds outbound mail, deferred (mailq on the "
                    "mail server)",
    "server-log": "the mail server's mail.log shows failed outbound deliveries throughout "
                  "the window",
    "server-rejects": "the mail server's mail.log shows the submissions it refused "
                      "(NOQUEUE: reject) throughout the window",
    "staff-bounces": "non-delivery reports about mail to outside addresses sit in the "
                     "staff's mailboxes (/var/mail on the mail server)",
    "inbound-delivered": "mail from outside kept arriving: the staff's mailboxes hold "
                         "messages from the sender's domain received in the window",
    "firewall-log": "the firewall's connection log (netguard -An) shows the window's "
                    "traffic",
    "alert-spool": "undelivered alerts wait in the firewall's spool "
                   "(/var/spool/mailq/outgoing/smtp and /var/spool/mailq/data)",
    "alert-log": "the firewall's alerts.log shows failed alert deliveries throughout the "
                 "window",
    "resolver-log": "the internet resolver's named.log shows failed resolutions throughout "
                    "the window",
    "internal-dns-log": "the internal DNS server's named.log shows failed resolutions "
                        "throughout the window",
    "relay-queue": "the inbound relay's queue holds mail for the mail domain, deferred with "
                   "the fault's error (mailq on the relay)",
    "relay-log": "the inbound relay's mail.log shows failed deliveries to the mail domain "
                 "throughout the window",
    "backup-mx-queue": "the backup MX's queue holds mail for the mail domain, deferred with "
                       "the fault's error (mailq on the backup MX)",
    "backup-mx-log": "the backup MX's mail.log shows failed deliveries to the mail domain "
                     "throughout the window",
    "inbound-stopped": "mail from outside stopped arriving: the staff's mailboxes hold "
                       "messages from the sender's domain from before the window, none since",
    "outbound-refused": "the mail server's mail.log shows mail to outside addresses refused "
                        "(at submission, or bounced by the next server) throughout the window",
}

_DURATION = re.compile(r"^(?:(\d{1,3})d)?(?:(\d{1,3})h)?(?:(\d{1,4})m)?$")
_TIME_OF_DAY = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)$")


def since_problem(text: str) -> str | None:
    """Why ``text`` is not a valid ``since``, or None."""
    m = _DURATION.match(text)
    if text and m and any(m.groups()):
        days, hours, minutes = (int(g or 0) for g in m.groups())
        if days * 86400 + hours * 3600 + minutes * 60 > MAX_SINCE:
            return f"'{text}' is longer than 7 days"
        return None
    if _TIME_OF_DAY.match(text):
        return None
    return (f"'{text}' is neither a duration (3h, 90m, 1d12h) nor a time of day (09:00)")


def since_seconds(text: str, now: datetime) -> float:
    """The window ``since`` means at ``now``, in seconds (``text`` must be valid)."""
    tod = _TIME_OF_DAY.match(text)
    if tod:
        start = now.replace(hour=int(tod.group(1)), minute=int(tod.group(2)), second=0,
                            microsecond=0)
        while (now - start).total_seconds() < MIN_SINCE_TIME_OF_DAY:
            start -= timedelta(days=1)
        return (now - start).total_seconds()
    m = _DURATION.match(text)
    assert m is not None, text
    days, hours, minutes = (int(g or 0) for g in m.groups())
    return float(days * 86400 + hours * 3600 + minutes * 60)


def _known_trace(name: str) -> str:
    if name not in TRACES:
        raise ValueError(f"unknown trace '{name}' (traces: {', '.join(TRACES)})")
    return name


class History(BaseModel):
    """How long the ticket's trouble has lasted, and the traces it promises."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    since: str = Field(DEFAULT_SINCE, description="duration (3h, 1d12h) or time of day (09:00)")
    traces: list[Annotated[str, AfterValidator(_known_trace)]] = []

    @field_validator("since", mode="before")
    @classmethod
    def _quoted(cls, v: object) -> object:
        if isinstance(v, int) and not isinstance(v, bool):
            raise ValueError(  # noqa: TRY004 - pydantic reports ValueError, not TypeError
                f"{v} is a number: write a duration such as 3h, or a time of day in "
                "quotes ('09:00': unquoted, YAML reads 9:00 as 540)")
        return v

    @field_validator("since")
    @classmethod
    def _since(cls, v: str) -> str:
        problem = since_problem(v.strip())
        if problem:
            raise ValueError(problem)
        return v.strip()

    @field_validator("traces")
    @classmethod
    def _traces(cls, v: list[str]) -> list[str]:
        twice = sorted({name for name in v if v.count(name) > 1})
        if twice:
            raise ValueError(f"trace {', '.join(twice)} is listed twice")
        return v

    def seconds(self, now: datetime | None = None) -> float:
        """The window in seconds at ``now`` (the machine's local time by default)."""
        return since_seconds(self.since, now or datetime.now().astimezone())
