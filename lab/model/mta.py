"""A node's SMTP role: the ``services: smtp:`` block of a topology node.

Plain data, checked on load; ``lab.services.mta.MtaService`` runs it.
"""
from __future__ import annotations

import re
from ipaddress import IPv4Network

from pydantic import BaseModel, ConfigDict, Field, field_validator

HOSTNAME_PATTERN = r"^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$"
USER_PATTERN = r"^[a-z0-9][a-z0-9._+-]{0,63}$"


class MtaConfig(BaseModel):
    """What a mail server accepts, for whom, and how it retries.

    ``relay_networks`` are the clients allowed to send to other domains, besides
    loopback. Messages that cannot be delivered are retried every ``retry_interval``
    seconds; after ``bounce_after`` seconds a non-delivery report goes to the sender.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    hostname: str = Field(pattern=HOSTNAME_PATTERN, max_length=253, description="banner and HELO name")
    domains: list[str] = Field(min_length=1, description="domains delivered to local mailboxes")
    users: list[str] = Field(default=[], description="local mailbox names, the same in every domain")
    relay_networks: list[IPv4Network] = []
    retry_interval: float = Field(default=30, gt=0, le=86400)
    bounce_after: float = Field(default=600, gt=0, le=30 * 86400)
    message_size_limit: int = Field(default=10_240_000, ge=1024)
    max_sessions: int = Field(default=50, ge=1, le=10_000)

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
