"""Firewall faults on the mail path: static and dynamic NAT, permit rules, the SMTP proxy.

Each one changes the firewall's *current* config (other faults may already have changed
it) and reloads the ruleset atomically; revert puts back only what it took away.
"""
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, field_validator

from lab.errors import LabError
from lab.faults._support import (
    FW,
    MAIL_DOMAIN,
    MX,
    IPv4,
    baseline_firewall,
    baseline_records,
    firewall_config,
    restore_item,
    set_firewall,
    NS_EXT,
    age_caches,
)
from lab.faults.base import AnswerKey, Fault, LabContext, NoParams
from lab.faults.dns import DELEGATION_TTL, set_mail_address
from lab.model.firewall import FirewallConfig, Rule, StaticNat


class _Params(BaseModel):
    model_config = ConfigDict(extra="forbid")


def mail_private(lab: LabContext) -> str:
    """The mail server's private address (its first interface)."""
    return str(lab.topo.nodes[MX].interfaces[0].address.ip)


def mail_static(lab: LabContext) -> StaticNat:
    """The baseline static-NAT entry for the mail server."""
    for entry in baseline_firewall(lab).static_nat:
        if entry.private == mail_private(lab):
            return entry
    raise LabError(f"topology {lab.topo.name} has no static NAT for {MX}")


def baseline_rule(lab: LabContext, name: str) -> Rule:
    for rule in baseline_firewall(lab).rules:
        if rule.name == name:
            return rule
    raise LabError(f"topology {lab.topo.name} has no firewall rule {name!r}")


async def drop_rule(lab: LabContext, name: str) -> bool:
    config = firewall_config(lab)
    rules = [r for r in config.rules if r.name != name]
    if len(rules) == len(config.rules):
        return False
    return await set_firewall(lab, config.model_copy(update={"rules": rules}))


async def restore_rule(lab: LabContext, name: str) -> bool:
    config = firewall_config(lab)
    rule = baseline_rule(lab, name)
    rules = restore_item(config.rules, baseline_firewall(lab).rules, rule, key=lambda r: r.name)
    return await set_firewall(lab, config.model_copy(update={"rules": rules}))


def _replace_static(config: FirewallConfig, public: str, entry: StaticNat | None) -> FirewallConfig:
    out = []
    for s in config.static_nat:
        if s.public == public:
            if entry is not None:
                out.append(entry)
        else:
            out.append(s)
    return config.model_copy(update={"static_nat": out})


class StaticMissing(Fault):
    name = "nat-static-missing"
    family = "nat"
    description = ("the static NAT for the mail server is gone while the smtp-in permit rule "
                   "still depends on it")
    symptom = ("telnet/nc to 203.0.113.25:25 from the internet times out; netguard -An shows "
               "the sessions denied (D) at the firewall")
    Params = NoParams

    def answer(self, params) -> AnswerKey:
        return AnswerKey("nat-static-missing", FW)

    async def apply(self, lab, params) -> None:
        config = firewall_config(lab)
        public = mail_static(lab).public
        if config.private_for(public) is not None:
            await set_firewall(lab, _replace_static(config, public, None))

    async def revert(self, lab, params) -> None:
        config = firewall_config(lab)
        entry = mail_static(lab)
        if config.private_for(entry.public) is None:
            nat = restore_item(config.static_nat, baseline_firewall(lab).static_nat, entry,
                               key=lambda s: s.public)
            await set_firewall(lab, config.model_copy(update={"static_nat": nat}))


class StaticWrongHost(Fault):
    name = "nat-static-wrong-host"
    family = "nat"
    description = "the mail server's static NAT points at a wrong private address"
    symptom = ("SMTP to 203.0.113.25 is permitted (P) in netguard -An but translated to a "
               "private address where nothing answers; senders time out")

    class Params(_Params):
        private: IPv4 = "10.1.0.26"

    def answer(self, params) -> AnswerKey:
        return AnswerKey("nat-static-wrong-host", FW)

    async def _move(self, lab, frm: str, to: str) -> None:
        config = firewall_config(lab)
        public = mail_static(lab).public
        if config.private_for(public) == frm:
            entry = StaticNat(public=public, private=to)
            await set_firewall(lab, _replace_static(config, public, entry))

    async def apply(self, lab, params) -> None:
        await self._move(lab, mail_private(lab), params.private)

    async def revert(self, lab, params) -> None:
        await self._move(lab, params.private, mail_private(lab))


class DynamicMissing(Fault):
    name = "nat-dynamic-missing"
    family = "nat"
    description = "dynamic NAT (masquerade of the LAN) is switched off on the firewall"
    symptom = ("internal hosts without a static NAT cannot reach the internet: ping "
               "203.0.113.20 from admin fails, ns-int cannot resolve outside names, so mx "
               "cannot find the MX of example.com")
    Params = NoParams

    def answer(self, params) -> AnswerKey:
        return AnswerKey("nat-dynamic-missing", FW)

    async def apply(self, lab, params) -> None:
        config = firewall_config(lab)
        if config.dynamic_nat:
            await set_firewall(lab, config.model_copy(update={"dynamic_nat": False}))
            # the outage is meant to be older than what the internal resolvers remember
            age_caches(lab, ".", DELEGATION_TTL, nodes=internal_resolvers(lab))

    async def revert(self, lab, params) -> None:
        config = firewall_config(lab)
        if not config.dynamic_nat and baseline_firewall(lab).dynamic_nat:
            await set_firewall(lab, config.model_copy(update={"dynamic_nat": True}))


def internal_resolvers(lab: LabContext) -> list[str]:
    """The nodes behind the firewall that run a DNS service."""
    segment = baseline_firewall(lab).internal
    return [name for name, node in lab.topo.nodes.items() if "dns" in node.services
            and any(i.segment == segment for i in node.interfaces)]


class _RuleMissing(Fault):
    family = "nat"
    rule = ""
    cause = ""
    Params = NoParams

    def answer(self, params) -> AnswerKey:
        return AnswerKey(self.cause, FW)

    async def apply(self, lab, params) -> None:
        await drop_rule(lab, self.rule)

    async def revert(self, lab, params) -> None:
        await restore_rule(lab, self.rule)


class SmtpPermitMissing(_RuleMissing):
    name = "fw-smtp-permit-missing"
    cause = "fw-smtp-permit-missing"
    rule = "smtp-in"
    description = "the permit rule for SMTP to the mail server's static-NAT address is gone"
    symptom = ("nc/telnet to 203.0.113.25:25 from the internet times out; netguard -An shows "
               "D for those sessions")


class IcmpBlocked(_RuleMissing):
    name = "fw-icmp-blocked"
    cause = "fw-icmp-blocked"
    rule = "icmp"
    description = "the ICMP permit rule is gone (a red herring: mail still flows)"
    symptom = ("ping 203.0.113.25 from the internet gets no reply, but telnet to port 25 "
               "answers and mail is delivered")


class ProxyServerNotListed(Fault):
    name = "proxy-server-not-listed"
    family = "nat"
    description = ("the SMTP proxy runs 'Inbound To' (DNS points at the firewall's address) "
                   "but the mail server is not in its servers list")
    symptom = ("mail.example.net resolves to 203.0.113.1; the proxy there accepts the "
               "session and answers 451 'no mail server reachable'; netguard -An shows D")

    class Params(_Params):
        servers: list[IPv4] = []

        @field_validator("servers", mode="before")
        @classmethod
        def _split(cls, v: object) -> object:
            if isinstance(v, str):  # --param servers=10.1.0.26,10.1.0.27
                return [s for s in (p.strip() for p in v.split(",")) if s]
            return v

    def answer(self, params) -> AnswerKey:
        return AnswerKey("proxy-server-not-listed", FW)

    def _fw_address(self, lab) -> str:
        return str(lab.topo.nodes[FW].interface_on(baseline_firewall(lab).external)[1].address.ip)

    async def apply(self, lab, params) -> None:
        if mail_private(lab) in params.servers:
            raise LabError(f"servers must not list the mail server {mail_private(lab)}")
        config = firewall_config(lab)
        proxy = config.proxy.model_copy(update={"mode": "inbound-to", "servers": params.servers})
        await set_firewall(lab, config.model_copy(update={"proxy": proxy}))
        good = baseline_records(lab, NS_EXT, MAIL_DOMAIN, "mail", "A")
        await set_mail_address(lab, self._fw_address(lab), only_if=good)

    async def revert(self, lab, params) -> None:
        config = firewall_config(lab)
        if config.proxy.mode == "inbound-to" and config.proxy.servers == params.servers:
            base = baseline_firewall(lab).proxy
            proxy = config.proxy.model_copy(update={"mode": base.mode, "servers": base.servers})
            await set_firewall(lab, config.model_copy(update={"proxy": proxy}))
        good = baseline_records(lab, NS_EXT, MAIL_DOMAIN, "mail", "A")
        if good:
            await set_mail_address(lab, good[0], only_if=[self._fw_address(lab)])


class ProxyModeMismatch(Fault):
    name = "proxy-mode-mismatch"
    family = "nat"
    description = ("the proxy mode does not match what DNS points at: 'Inbound To' on the "
                   "firewall (and the permit rule removed) while mail.example.net still "
                   "points at the static-NAT address, or DNS pointing at the firewall's own "
                   "address while the proxy is off")
    symptom = ("dns_points_at=static-nat: SMTP to 203.0.113.25 is denied (D) while the "
               "firewall's 203.0.113.1:25 answers; dns_points_at=firewall: mail.example.net "
               "resolves to 203.0.113.1 where nothing accepts SMTP")

    class Params(_Params):
        dns_points_at: Literal["static-nat", "firewall"] = "static-nat"

    def answer(self, params) -> AnswerKey:
        return AnswerKey("proxy-mode-mismatch", FW)

    _fw_address = ProxyServerNotListed._fw_address

    async def apply(self, lab, params) -> None:
        if params.dns_points_at == "static-nat":
            config = firewall_config(lab)
            proxy = config.proxy.model_copy(update={"mode": "inbound-to"})
            rules = [r for r in config.rules if r.name != "smtp-in"]
            await set_firewall(lab, config.model_copy(update={"proxy": proxy, "rules": rules}))
        else:
            good = baseline_records(lab, NS_EXT, MAIL_DOMAIN, "mail", "A")
            await set_mail_address(lab, self._fw_address(lab), only_if=good)

    async def revert(self, lab, params) -> None:
        if params.dns_points_at == "static-nat":
            config = firewall_config(lab)
            base = baseline_firewall(lab)
            if config.proxy.mode == "inbound-to" and config.proxy.servers == base.proxy.servers:
                proxy = config.proxy.model_copy(update={"mode": base.proxy.mode})
                config = config.model_copy(update={"proxy": proxy})
            rules = restore_item(config.rules, base.rules, baseline_rule(lab, "smtp-in"),
                                 key=lambda r: r.name)
            await set_firewall(lab, config.model_copy(update={"rules": rules}))
        else:
            good = baseline_records(lab, NS_EXT, MAIL_DOMAIN, "mail", "A")
            if good:
                await set_mail_address(lab, good[0], only_if=[self._fw_address(lab)])


FAULTS = [StaticMissing(), StaticWrongHost(), DynamicMissing(), SmtpPermitMissing(),
          IcmpBlocked(), ProxyServerNotListed(), ProxyModeMismatch()]
