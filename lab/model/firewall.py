"""The firewall role config: NAT, named permit rules, the SMTP proxy and the log group.

Under a firewall node's ``services: firewall:`` in a topology file. ``external``,
``internal`` and the optional ``dmz`` are segment names; the engine maps them to the
node's interfaces.
"""
from __future__ import annotations

import ipaddress
import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

RULE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$")
DOMAIN = re.compile(r"^(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)*"
                    r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")

# a rule's endpoint for the firewall itself (``from: fw``), whatever the node's name
FIREWALL_ITSELF = "fw"

Proto = Literal["tcp", "udp", "icmp", "any"]
PROTOS = ("tcp", "udp", "icmp", "any")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _ipv4(value: object, what: str) -> str:
    try:
        return str(ipaddress.IPv4Address(str(value).strip()))
    except ValueError:
        raise ValueError(f"{what} {value!r} is not an IPv4 address") from None


def _endpoint(value: object, what: str, allow_fw: bool) -> str:
    """``any``, ``fw`` (the firewall itself), an IPv4 address or an IPv4 network."""
    text = str(value).strip()
    if text == "any":
        return text
    if text == "fw":
        if not allow_fw:
            raise ValueError(f"{what} cannot be 'fw' here")
        return text
    try:
        if "/" in text:
            return str(ipaddress.IPv4Network(text, strict=True))
        return str(ipaddress.IPv4Address(text))
    except ValueError:
        raise ValueError(
            f"{what} {value!r} is not 'any', 'fw', an IPv4 address or an IPv4 network"
        ) from None


class StaticNat(_Strict):
    """One 1:1 mapping: traffic to ``public`` goes to ``private``, and back."""

    public: str
    private: str

    @field_validator("public")
    @classmethod
    def _public(cls, v: object) -> str:
        return _ipv4(v, "public address")

    @field_validator("private")
    @classmethod
    def _private(cls, v: object) -> str:
        return _ipv4(v, "private address")


class Rule(_Strict):
    """A named permit rule. ``to`` a static-NAT public address matches after DNAT."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    name: str
    from_: str = Field(alias="from")
    to: str
    proto: str = "any"
    port: int | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not RULE_NAME.fullmatch(v):
            raise ValueError(
                f"rule name {v!r} must be 1-32 letters, digits, '-', '_' or '.', "
                "starting with a letter or digit"
            )
        if v == "default":
            raise ValueError("rule name 'default' is reserved for the default deny")
        return v

    @field_validator("from_", mode="before")
    @classmethod
    def _from(cls, v: object) -> str:
        return _endpoint(v, "from", allow_fw=True)

    @field_validator("to", mode="before")
    @classmethod
    def _to(cls, v: object) -> str:
        return _endpoint(v, "to", allow_fw=True)

    @field_validator("proto", mode="before")
    @classmethod
    def _proto(cls, v: object) -> str:
        text = str(v).strip().lower()
        if text not in PROTOS:
            raise ValueError(f"unknown proto {v!r}; use one of: {', '.join(PROTOS)}")
        return text

    @field_validator("port")
    @classmethod
    def _port(cls, v: int | None) -> int | None:
        if v is not None and not 1 <= v <= 65535:
            raise ValueError(f"port {v} is out of range 1-65535")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> Rule:
        if self.port is not None and self.proto not in ("tcp", "udp"):
            raise ValueError(
                f"rule {self.name!r}: a port needs proto tcp or udp (proto is {self.proto!r})"
            )
        if self.from_ == "fw" and self.to == "fw":
            raise ValueError(f"rule {self.name!r}: 'from: fw' and 'to: fw' together")
        return self


class Proxy(_Strict):
    """The firewall's SMTP proxy.

    ``inbound-through``: SMTP arriving on the external interface is redirected to
    ``port`` and passed on to the static-NAT private address of its original
    destination. ``inbound-to``: the proxy listens on the firewall's external address
    port 25 and relays each message to the first reachable of ``servers``, for
    recipients in ``domains`` (an empty list relays any domain). ``outbound``: SMTP from
    the internal network to the outside is redirected to ``outbound_port`` and relayed to
    its original destination from the firewall's external address, for senders in
    ``outbound_senders`` (domains; empty: any).

    The proxy speaks SMTP itself (a Received line of its own, STARTTLS with a certificate
    for ``hostname`` and ``tls_names``) and checks each recipient with the mail server
    behind it before answering the sender; its SIZE is that server's message_size_limit.
    """

    mode: Literal["none", "inbound-through", "inbound-to"] = "none"
    servers: list[str] = []
    domains: list[str] = []
    port: int = 2525
    outbound: bool = False
    outbound_port: int = 2526
    outbound_senders: list[str] = []
    hostname: str = "localhost"  # the proxy's FQDN: a topology names it (banner, EHLO)
    tls_names: list[str] = []

    @field_validator("servers", mode="before")
    @classmethod
    def _servers(cls, v: object) -> list[str]:
        if not isinstance(v, list):
            raise ValueError("servers must be a list of IPv4 addresses")  # noqa: TRY004 (pydantic)
        return [_ipv4(s, "proxy server") for s in v]

    @field_validator("domains", "outbound_senders", "tls_names")
    @classmethod
    def _domains(cls, v: list[str]) -> list[str]:
        out = []
        for d in v:
            d = d.strip().rstrip(".").lower()
            if not DOMAIN.fullmatch(d):
                raise ValueError(f"proxy domain {d!r} is not a domain name")
            out.append(d)
        return out

    @field_validator("hostname")
    @classmethod
    def _hostname(cls, v: str) -> str:
        v = v.strip().rstrip(".").lower()
        if not DOMAIN.match(v):
            raise ValueError(f"proxy hostname {v!r} is not a host name")
        return v

    @field_validator("port", "outbound_port")
    @classmethod
    def _port(cls, v: int) -> int:
        if not 1024 <= v <= 65535 or v == 25:
            raise ValueError(f"proxy port {v} must be in 1024-65535")
        return v

    @model_validator(mode="after")
    def _ports_differ(self) -> Proxy:
        if self.port == self.outbound_port:
            raise ValueError("port and outbound_port must differ")
        return self


class FirewallConfig(_Strict):
    """The firewall's sides (segment names: ``external``, ``internal`` and, for a
    three-legged firewall, ``dmz``), its NAT, permit rules, proxy and log group."""

    external: str
    internal: str
    dmz: str | None = None
    dynamic_nat: bool = True
    static_nat: list[StaticNat] = []
    rules: list[Rule] = []
    proxy: Proxy = Proxy()
    log_group: int = 1

    @field_validator("log_group")
    @classmethod
    def _group(cls, v: int) -> int:
        if not 0 <= v <= 65535:
            raise ValueError(f"log_group {v} is out of range 0-65535")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> FirewallConfig:
        sides = [self.external, self.internal] + ([self.dmz] if self.dmz else [])
        if len(set(sides)) != len(sides):
            raise ValueError("external, internal and dmz must be different segments")
        seen: set[str] = set()
        for rule in self.rules:
            if rule.name in seen:
                raise ValueError(f"rule name {rule.name!r} is used twice")
            seen.add(rule.name)
        publics = [s.public for s in self.static_nat]
        dup = {p for p in publics if publics.count(p) > 1}
        if dup:
            raise ValueError(f"static_nat public address {min(dup)} is mapped twice")
        return self

    def private_for(self, public: str) -> str | None:
        for entry in self.static_nat:
            if entry.public == public:
                return entry.private
        return None
