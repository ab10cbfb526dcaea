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

    @model_validator(mode="after")
    def _backoff(self) -> MtaConfig:
        if self.maximal_backoff_time < self.minimal_backoff_time:
            raise ValueError("maximal_backoff_time is below minimal_backoff_time")
        return self

    def tls_level(self, domain: str) -> str:
        """The client's TLS security level for mail to ``domain``."""
        return self.smtp_tls_policy.get(domain.lower().rstrip("."), self.smtp_tls_security_level)

    @field_validator("hostname", mode="before")
    @classmethod
    def _lower_host(cls, value: object) -> object:
        return value.lower().rstrip(".") if isinstance(value, str) else value

    @field_validator("domains")
    @classmethod
    def _check_domains(cls, value: list[str]) -> list[str]:
        out = []
        for domain in value:
            d = domain.lower().rstrip(".")
            if not re.fullmatch(HOSTNAME_PATTERN, d) or "." not in d:
                raise ValueError(f"'{domain}' is not a domain name")
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
