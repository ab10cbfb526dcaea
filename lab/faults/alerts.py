"""Faults that keep the firewall's alert mails in its spool: no split DNS view for the
firewall, and a missing permit rule for the firewall's own traffic on the alert path (to
the mail server, or to the internal DNS server it resolves the mail server with)."""
from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from lab.errors import LabError
from lab.faults._checks import dns_query, tcp_passes
from lab.faults._support import IPv4, read_nameservers, write_nameservers
from lab.faults.base import Cause, Fault, LabContext, Repair
from lab.faults.nat import _RuleMissing
from lab.model.firewall import FIREWALL_ITSELF, Rule
from lab.model.roles import Roles
from lab.model.services import parse_service


class NoSplitView(Fault):
    name = "dns-no-split-view"
    family = "alerts"
    causes = (Cause("dns-no-split-view", "no split DNS",
                    "a host resolves the mail server to its public instead of its private "
                    "address", "dns"),)
    where = "firewall"
    description = ("the firewall resolves through ${params.nameserver}, a public server, so "
                   "it gets the mail server's public address instead of the private one")
    symptom = ("dig ${roles.alert_server} on ${roles.firewall} does not answer the private "
               "${roles.mail_private} (it asks ${params.nameserver}); alerts stay in "
               "/var/spool/mailq/outgoing/smtp and /var/spool/mailq/data on ${roles.firewall}")

    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid")
        nameserver: IPv4 | None = None

    def drawn(self, rng, roles) -> dict:
        """An outside server that answers for the mail domain with the public view: a
        resolver of the internet, or the public authoritative server itself."""
        servers = [roles.public_resolver_address, roles.public_dns_address]
        return {"nameserver": rng.choice([s for s in servers if s])}

    async def apply(self, lab, params) -> None:
        write_nameservers(lab, lab.roles.need("firewall"), [params.nameserver])

    async def revert(self, lab, params) -> None:
        fw = lab.roles.need("firewall")
        _path, _lines, current = read_nameservers(lab, fw)
        if current == [params.nameserver]:
            write_nameservers(lab, fw, [str(a) for a in lab.topo.nodes[fw].nameservers])

    async def check_repaired(self, lab, params) -> Repair:
        roles = lab.roles
        fw, host, private = roles.need("firewall"), roles.need("alert_server"), roles.need(
            "mail_private")
        _path, _lines, servers = read_nameservers(lab, fw)
        if not servers:
            return Repair(False, f"{fw}'s /etc/resolv.conf names no nameserver")
        answer = await dns_query(lab, fw, servers[0], host, "A")
        return Repair(answer.answers == (private,),
                      f"{host} A on {fw} (nameserver {servers[0]}): {answer.text()} "
                      f"(the mail server's private address is {private})")


def alert_rules(roles: Roles) -> list[Rule]:
    """The firewall's own permits on the alert path, as the topology has them: SMTP to the
    mail server, DNS to the internal name server."""
    fw = roles.need("firewall")
    config = parse_service("firewall", roles.topo.nodes[fw].services["firewall"])
    wanted = {(roles.mail_private, "tcp", 25), (roles.internal_dns_address, "udp", 53)}
    return [r for r in config.rules
            if r.from_ == FIREWALL_ITSELF and (r.to, r.proto, r.port) in wanted]


class AlertPermitMissing(_RuleMissing):
    name = "fw-alert-permit-missing"
    family = "alerts"
    causes = (Cause("fw-alert-permit-missing", "alert permit rule missing",
                    "no rule permits the firewall itself to reach the mail server or the "
                    "name server it resolves it with", "firewall"),)
    key_params = ("rule",)
    description = "the firewall's own permit rule ${params.rule} on the alert path is gone"
    symptom = ("from ${roles.firewall}, SMTP to ${roles.mail_private}:25 or DNS to "
               "${roles.internal_dns_address} times out; netguard -An shows D for it; "
               "alerts stay in /var/spool/mailq on ${roles.firewall}")

    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid")
        rule: str | None = None

    def variants(self, roles) -> list[dict]:
        return [{"rule": r.name} for r in alert_rules(roles)] or [{}]

    def validate(self, params, roles) -> None:
        self._rule(roles, params)

    def _rule(self, roles, params) -> Rule:
        rules = alert_rules(roles)
        for rule in rules:
            if rule.name == params.rule or params.rule is None:
                return rule
        names = ", ".join(r.name for r in rules) or "none"
        raise LabError(f"{params.rule!r} is not a rule of the alert path",
                       hint=f"rules: {names}")

    def rule_of(self, lab, params) -> str:
        return self._rule(lab.roles, params).name

    async def check_repaired(self, lab, params) -> Repair:
        return await _firewall_own_traffic(lab, self._rule(lab.roles, params))


async def _firewall_own_traffic(lab: LabContext, rule: Rule) -> Repair:
    """Does the firewall's own traffic of ``rule``'s kind get through again?"""
    roles = lab.roles
    fw = roles.need("firewall")
    if rule.proto == "udp":
        answer = await dns_query(lab, fw, rule.to, roles.need("alert_server"), "A")
        ok = answer.status != "timeout"
        return Repair(ok, f"DNS from {fw} to {rule.to}: {answer.text()}")
    return await tcp_passes(lab, fw, rule.to, rule.port or 25)


FAULTS = [NoSplitView(), AlertPermitMissing()]
