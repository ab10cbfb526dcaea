"""Firewall faults on the mail path: static and dynamic NAT, permit rules.

Each one changes the firewall's *current* config (other faults may already have changed
it) and reloads the ruleset atomically; revert puts back only what it took away. The
rules and NAT entries concerned are found from the roles (the rule that permits SMTP to
the mail server's static-NAT address, ...), not by name. A repair is judged from the live
ruleset or from traffic, since a trainee repairs with nft, not through the lab.
"""
from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from lab.errors import LabError
from lab.faults._checks import nft_rules, ping, tcp_passes
from lab.faults._support import (
    IPv4,
    age_caches,
    baseline_firewall,
    firewall_config,
    restore_item,
    set_firewall,
    unused_address,
)
from lab.faults.base import Cause, Fault, LabContext, NoParams, Repair
from lab.faults.dns import DELEGATION_TTL
from lab.model.firewall import FirewallConfig, Rule, StaticNat


class _Params(BaseModel):
    model_config = ConfigDict(extra="forbid")


def mail_static(lab: LabContext) -> StaticNat:
    """The baseline static-NAT entry for the inbound mail server (the mail server, or an
    inbound relay in front of it)."""
    private = lab.roles.need("inbound_private")
    for entry in baseline_firewall(lab).static_nat:
        if entry.private == private:
            return entry
    raise LabError(f"topology {lab.topo.name} has no static NAT for "
                   f"{lab.roles.need('inbound_server')}")


def baseline_rule(lab: LabContext, name: str) -> Rule:
    for rule in baseline_firewall(lab).rules:
        if rule.name == name:
            return rule
    raise LabError(f"topology {lab.topo.name} has no firewall rule {name!r}")


def find_rule(lab: LabContext, what: str, test) -> str:
    """The name of the baseline rule for which ``test(rule)`` holds (``what`` it does)."""
    for rule in baseline_firewall(lab).rules:
        if test(rule):
            return rule.name
    raise LabError(f"topology {lab.topo.name} has no firewall rule that {what}")


def smtp_in_rule(lab: LabContext) -> str:
    public = lab.roles.need("inbound_public")
    return find_rule(lab, f"permits SMTP to {public}", lambda r: r.to == public
                     and r.proto in ("tcp", "any") and r.port in (25, None))


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


def dnat_target(rules: list[dict], public: str) -> str | None:
    """Where the live ruleset's first DNAT for traffic to ``public`` sends it (None: no
    DNAT), reading nat/prerouting rules of any table as nft lists them."""
    for rule in rules:
        if rule.get("type") != "nat" or rule.get("hook") != "prerouting":
            continue
        matches_public = target = None
        for expr in rule.get("expr", []):
            match = expr.get("match")
            if match and match.get("left", {}).get("payload", {}).get("field") == "daddr":
                right = match.get("right")
                matches_public = right == public or (isinstance(right, dict) and public in str(
                    right))
            if "dnat" in expr:
                target = str(expr["dnat"].get("addr"))
        if matches_public and target is not None:
            return target
    return None


async def static_nat_right(lab: LabContext) -> Repair:
    roles = lab.roles
    public, private = roles.need("inbound_public"), roles.need("inbound_private")
    target = dnat_target(await nft_rules(lab, roles.need("firewall")), public)
    return Repair(target == private,
                  f"{roles.firewall}'s ruleset translates {public} to {target}" if target
                  else f"{roles.firewall}'s ruleset has no DNAT for {public}")


class StaticMissing(Fault):
    name = "nat-static-missing"
    family = "nat"
    causes = (Cause("nat-static-missing", "static NAT missing",
                    "the firewall has no static NAT for the public address of the mail "
                    "server (or of the relay that takes the mail from the internet)",
                    "firewall"),)
    where = "firewall"
    description = ("the static NAT for ${roles.inbound_server} is gone while the permit rule "
                   "for SMTP to ${roles.inbound_public} still depends on it")
    symptom = ("telnet/nc to ${roles.inbound_public}:25 from the internet times out; netguard "
               "-An shows the sessions denied (D) at the firewall")
    Params = NoParams

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

    async def check_repaired(self, lab, params) -> Repair:
        return await static_nat_right(lab)


class StaticWrongHost(Fault):
    name = "nat-static-wrong-host"
    family = "nat"
    causes = (Cause("nat-static-wrong-host", "static NAT to wrong host",
                    "the static NAT maps the public address to a wrong private address",
                    "firewall"),)
    where = "firewall"
    description = ("${roles.inbound_server}'s static NAT points at ${params.private}, a wrong "
                   "address")
    symptom = ("SMTP to ${roles.inbound_public} is permitted (P) in netguard -An but translated "
               "to ${params.private}, where nothing answers; senders time out")

    class Params(_Params):
        private: IPv4 | None = None

    def drawn(self, rng, roles) -> dict:
        return {"private": unused_address(rng, roles, roles.need("inbound_subnet"))}

    async def _move(self, lab, frm: str, to: str) -> None:
        config = firewall_config(lab)
        public = mail_static(lab).public
        if config.private_for(public) == frm:
            entry = StaticNat(public=public, private=to)
            await set_firewall(lab, _replace_static(config, public, entry))

    async def apply(self, lab, params) -> None:
        await self._move(lab, lab.roles.need("inbound_private"), params.private)

    async def revert(self, lab, params) -> None:
        await self._move(lab, params.private, lab.roles.need("inbound_private"))

    async def check_repaired(self, lab, params) -> Repair:
        return await static_nat_right(lab)


def internal_resolvers(lab: LabContext) -> list[str]:
    return list(lab.roles.internal_resolvers)


class DynamicMissing(Fault):
    name = "nat-dynamic-missing"
    family = "nat"
    causes = (Cause("nat-dynamic-missing", "dynamic NAT missing",
                    "internal hosts are not translated (many-to-one) when they go out",
                    "firewall"),)
    where = "firewall"
    description = "dynamic NAT (masquerade of the LAN) is switched off on the firewall"
    symptom = ("internal hosts without a static NAT cannot reach the internet: ping "
               "${roles.sender_address} from ${roles.internal_client} fails, "
               "${roles.internal_dns} cannot resolve outside names, so ${roles.mail_server} "
               "cannot find the MX of ${roles.sender_domain}")
    Params = NoParams

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

    async def check_repaired(self, lab, params) -> Repair:
        roles = lab.roles
        client = roles.need("internal_client")
        return await tcp_passes(lab, client, roles.need("sender_address"), 25,
                                f"{client} ({roles.internal_client_address})")


class _RuleMissing(Fault):
    """A permit rule of the healthy policy is gone; ``rule_of(lab)`` finds it by what
    it permits."""

    family = "nat"
    where = "firewall"
    Params = NoParams

    def rule_of(self, lab: LabContext, params) -> str:
        raise NotImplementedError

    async def apply(self, lab, params) -> None:
        await drop_rule(lab, self.rule_of(lab, params))

    async def revert(self, lab, params) -> None:
        await restore_rule(lab, self.rule_of(lab, params))


class SmtpPermitMissing(_RuleMissing):
    name = "fw-smtp-permit-missing"
    causes = (Cause("fw-smtp-permit-missing", "SMTP permit rule missing",
                    "no firewall rule permits inbound SMTP to the mail server (or the relay "
                    "in front of it)", "firewall"),)
    description = ("the permit rule for SMTP to ${roles.inbound_server}'s static-NAT address "
                   "${roles.inbound_public} is gone")
    symptom = ("nc/telnet to ${roles.inbound_public}:25 from the internet times out; netguard "
               "-An shows D for those sessions")

    def rule_of(self, lab, params) -> str:
        return smtp_in_rule(lab)

    async def check_repaired(self, lab, params) -> Repair:
        """The firewall passes SMTP to the static-NAT address again: the handshake is
        answered (by the mail server, or refused by it: either way the firewall let it by)."""
        roles = lab.roles
        return await tcp_passes(lab, roles.need("outside_client"), roles.need("inbound_public"),
                                25)


class IcmpBlocked(_RuleMissing):
    name = "fw-icmp-blocked"
    causes = (Cause("fw-icmp-blocked", "ICMP not permitted",
                    "the firewall does not permit ICMP echo to the mail server (or its "
                    "relay)", "firewall"),)
    description = "the ICMP permit rule is gone (a red herring: mail still flows)"
    symptom = ("ping ${roles.inbound_public} from the internet gets no reply, but telnet to port "
               "25 answers and mail is delivered")

    def rule_of(self, lab, params) -> str:
        return find_rule(lab, "permits ICMP", lambda r: r.proto == "icmp")

    async def check_repaired(self, lab, params) -> Repair:
        roles = lab.roles
        client, public = roles.need("outside_client"), roles.need("inbound_public")
        sent, received = await ping(lab, client, public, count=3)
        return Repair(received > 0, f"ping from {client} to {public}: {received} of {sent} "
                                    "answered")


FAULTS = [StaticMissing(), StaticWrongHost(), DynamicMissing(), SmtpPermitMissing(),
          IcmpBlocked()]
