"""The firewall's alert mailer: the ``services: alerts:`` block of the firewall node.

Plain data, checked on load; ``lab.services.alerts.AlertMailer`` runs it. The mail
server is a *name*, resolved through the firewall's own resolver at every attempt: with
split DNS it resolves to the mail server's private address and the alert goes out; without
it the firewall gets the public address and delivery fails (the lesson).
"""
from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from lab.model.mta import HOSTNAME_PATTERN

ADDRESS_PATTERN = re.compile(r"^[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9.-]{1,253}$")


def _hostname(value: object, what: str) -> object:
    if not isinstance(value, str):
        return value
    name = value.strip().lower().rstrip(".")
    if not re.fullmatch(HOSTNAME_PATTERN, name) or len(name) > 253:
        raise ValueError(f"{what} {value!r} is not a host name")
    return name


def _address(value: object, what: str) -> object:
    if not isinstance(value, str):
        return value
    text = value.strip()
    if not ADDRESS_PATTERN.fullmatch(text):
        raise ValueError(f"{what} {value!r} is not a mail address (user@domain)")
    local, _, domain = text.rpartition("@")
    _hostname(domain, f"{what} domain")
    return f"{local}@{domain.lower().rstrip('.')}"


class AlertsConfig(BaseModel):
    """Who gets the firewall's alerts, from whom, through which server, how often retried.

    ``from`` is the YAML key of ``from_``. ``retry_interval`` is the wait, in seconds,
    between attempts at an alert that could not be delivered. ``helo`` defaults to the
    domain of ``from``. The defaults name no topology: a topology states its own.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    to: str = Field(default="postmaster@localhost", description="recipient of every alert")
    from_: str = Field(default="netguard@localhost", alias="from",
                       description="sender (envelope and From: header)")
    mail_server: str = Field(default="localhost",
                             description="host NAME of the SMTP server, resolved (A) each attempt")
    retry_interval: float = Field(default=10, gt=0, le=86400)
    helo: str = Field(default="localhost", description="name sent in EHLO/HELO")

    @model_validator(mode="before")
    @classmethod
    def _helo_from_sender(cls, data: object) -> object:
        if isinstance(data, dict) and "helo" not in data:
            sender = data.get("from", data.get("from_"))
            if isinstance(sender, str) and "@" in sender:
                return {**data, "helo": sender.rpartition("@")[2]}
        return data

    @field_validator("to", mode="before")
    @classmethod
    def _to(cls, v: object) -> object:
        return _address(v, "to")

    @field_validator("from_", mode="before")
    @classmethod
    def _from(cls, v: object) -> object:
        return _address(v, "from")

    @field_validator("mail_server", mode="before")
    @classmethod
    def _server(cls, v: object) -> object:
        return _hostname(v, "mail_server")

    @field_validator("helo", mode="before")
    @classmethod
    def _helo(cls, v: object) -> object:
        return _hostname(v, "helo")
