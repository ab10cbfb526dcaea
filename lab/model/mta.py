"""A node's SMTP role: the ``services: smtp:`` block of a topology node.

Plain data, checked on load; ``lab.services.mta.MtaService`` runs it.
"""
from __future__ import annotations

import re
from ipaddress import IPv4Network
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

HOSTNAME_PATTERN = r"^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$"
USER_PATTERN = r"^[a-z0-9][a-z0-9._+-]{0,63}$"


TlsLevel = Literal["none", "may", "encrypt", "verify"]
MESSAGE_SIZE_LIMIT = 10_240_000  # Postfix's default message_size_limit
TRANSPORTS = ("smtp", "relay")  # the delivery transports a transport entry may name


class NextHop(BaseModel):
    """Where the SMTP client sends mail, in Postfix's next-hop syntax: ``host`` or
    ``host:port`` looks up the host's MX records first, ``[host]`` or ``[host]:port`` (an
    IPv4 address is written this way too) goes to its address directly."""

    model_config = ConfigDict(frozen=True)

    host: str
    port: int = 25
    mx: bool = True  # look up MX records for host (no brackets)

    def __str__(self) -> str:
        host = self.host if self.mx else f"[{self.host}]"
        return host if self.port == 25 else f"{host}:{self.port}"


_NEXTHOP = re.compile(r"^(\[(?P<bracketed>[^\]]+)\]|(?P<plain>[^:\[\]]+))(:(?P<port>\d{1,5}))?$")


def parse_nexthop(text: str) -> NextHop:
    """``smtp.example.net``, ``[smtp.example.net]:587``, ``[198.51.100.30]``, ... as a
    NextHop; ValueError saying what is wrong."""
    m = _NEXTHOP.match(text.strip())
    if not m:
        raise ValueError(f"{text!r} is not a next hop (host, host:port, [host] or [host]:port)")
    host = (m.group("bracketed") or m.group("plain")).lower().rstrip(".")
    port = int(m.group("port") or 25)
    if not 1 <= port <= 65535:
        raise ValueError(f"{text!r}: port {port} is out of range")
    if not re.fullmatch(HOSTNAME_PATTERN, host):
        raise ValueError(f"{text!r}: {host!r} is not a host name or IPv4 address")
    return NextHop(host=host, port=port, mx=m.group("bracketed") is None)


def parse_transport(text: str) -> NextHop | None:
    """A transport table entry, ``smtp:[host]``, ``relay:host:port``, ``:[host]`` (the
    next hop only) or ``smtp:`` (the transport only: the recipient domain's MX)."""
    name, sep, hop = text.strip().partition(":")
    if not sep or name not in (*TRANSPORTS, ""):
        raise ValueError(f"{text!r} is not a transport entry (smtp:[host], relay:[host]:port, "
                         ":[host] or smtp:)")
    return parse_nexthop(hop) if hop else None


class MtaConfig(BaseModel):
    """What a mail server accepts, for whom, and how it retries, in Postfix's terms.

    ``relay_networks`` are the clients allowed to send to other domains, besides
    loopback (Postfix's mynetworks; they are also exempt from the per-client connection
    limit, as Postfix's smtpd_client_event_limit_exceptions). A deferred message is
    retried after ``minimal_backoff_time`` seconds, the wait doubling at each failure up
    to ``maximal_backoff_time``; the queue is scanned every ``queue_run_delay`` seconds
    (Postfix: 300, 4000, 300; the reference topology divides them by ten so a lab's
    retries happen within an exercise). After ``bounce_after`` seconds a non-delivery
    report goes to the sender.

    TLS: ``smtpd_tls_security_level`` ``may`` offers STARTTLS (``none`` does not);
    ``smtp_tls_security_level`` is the client's default when sending, and
    ``smtp_tls_policy`` overrides it per destination domain (``encrypt``: TLS required).

    Routing, as Postfix's trivial-rewrite: ``relay_domains`` are accepted from any client
    and relayed (an inbound relay, a backup MX); ``transport`` gives a domain its next hop
    (``smtp:[host]``: no MX lookup), before anything else; ``relayhost`` (a smarthost) is
    the next hop of every other non-local domain, relay domains included; without one,
    mail goes to the recipient domain's MX hosts. ``smtp_connect_timeout`` is how long the
    client waits for a TCP connection before it tries the next MX host (Postfix: 30 s).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    hostname: str = Field(pattern=HOSTNAME_PATTERN, max_length=253, description="banner and HELO name")
    domains: list[str] = Field(min_length=1, description="domains delivered to local mailboxes")
    users: list[str] = Field(default=[], description="local mailbox names, the same in every domain")
    relay_networks: list[IPv4Network] = []
    minimal_backoff_time: float = Field(default=300, gt=0, le=86400)
    maximal_backoff_time: float = Field(default=4000, gt=0, le=86400)
    queue_run_delay: float = Field(default=300, gt=0, le=86400)
    bounce_after: float = Field(default=600, gt=0, le=30 * 86400)
    message_size_limit: int = Field(default=MESSAGE_SIZE_LIMIT, ge=1024)
    process_limit: int = Field(default=100, ge=1, le=10_000, description="smtpd processes")
    client_connection_limit: int = Field(default=50, ge=0, le=10_000,
                                         description="per client; 0: no limit")
    smtpd_tls_security_level: Literal["none", "may"] = "may"
    smtp_tls_security_level: TlsLevel = "may"
    smtp_tls_policy: dict[str, TlsLevel] = {}
    relay_domains: list[str] = []
    transport: dict[str, str] = {}
    relayhost: str | None = None
    smtp_connect_timeout: float = Field(default=30, gt=0, le=600)

    @model_validator(mode="after")
    def _backoff(self) -> MtaConfig:
        if self.maximal_backoff_time < self.minimal_backoff_time:
            raise ValueError("maximal_backoff_time is below minimal_backoff_time")
        both = set(self.domains) & set(self.relay_domains)
        if both:
            raise ValueError(f"{min(both)} is both a local domain and a relay domain")
        return self

    @field_validator("relayhost")
    @classmethod
    def _relayhost(cls, value: str | None) -> str | None:
        if value is not None:
            parse_nexthop(value)
        return value

    @field_validator("transport")
    @classmethod
    def _transport(cls, value: dict[str, str]) -> dict[str, str]:
        out = {}
        for domain, entry in value.items():
            d = _domain(domain)
            parse_transport(entry)
            out[d] = entry.strip()
        return out

    def next_hop(self, domain: str) -> NextHop | None:
        """Where mail for ``domain`` goes: its transport entry's next hop, else the
        relayhost, else None (the recipient domain's MX hosts)."""
        domain = domain.lower().rstrip(".")
        if domain in self.transport:
            hop = parse_transport(self.transport[domain])
            if hop is not None:
                return hop
        return parse_nexthop(self.relayhost) if self.relayhost else None

    def relays_for(self, domain: str) -> bool:
        """Is ``domain`` one of the relay domains (accepted from anyone, relayed)?"""
        return domain.lower().rstrip(".") in self.relay_domains

    def tls_level(self, domain: str) -> str:
        """The client's TLS security level for mail to ``domain``."""
        return self.smtp_tls_policy.get(domain.lower().rstrip("."), self.smtp_tls_security_level)

    @field_validator("hostname", mode="before")
    @classmethod
    def _lower_host(cls, value: object) -> object:
        return value.lower().rstrip(".") if isinstance(value, str) else value

    @field_validator("domains", "relay_domains")
    @classmethod
    def _check_domains(cls, value: list[str]) -> list[str]:
        out = []
        for domain in value:
            d = _domain(domain)
            if d in out:
                raise ValueError(f"'{domain}' is listed twice")
            out.append(d)
        return out

    @field_validator("users")
    @classmethod
    def _check_users(cls, value: list[str]) -> list[str]:
        out = []
        for user in value:
            u = user.lower()
            if not re.fullmatch(USER_PATTERN, u):
                raise ValueError(
                    f"'{user}' is not a mailbox name (letters, digits, '.', '_', '+', '-')"
                )
            if u in out:
                raise ValueError(f"'{user}' is listed twice")
            out.append(u)
        return out


def _domain(domain: str) -> str:
    d = domain.lower().rstrip(".")
    if not re.fullmatch(HOSTNAME_PATTERN, d) or "." not in d:
        raise ValueError(f"'{domain}' is not a domain name")
    return d
