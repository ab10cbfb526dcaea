"""Faults of a company that relies on its ISP and keeps an inbound relay in a DMZ: the
relay's own routing (its next hop for the mail domain, the domain missing from what it
relays), the firewall's permit between the DMZ and the LAN, the ISP's smarthost refusing
the company's mail, the internal DNS server forwarding to a resolver that does not answer.

They need the roles only such a topology has (``inbound_relay``, ``smarthost``,
``internal_forwarder``): on another topology they refuse with the missing role named. A
repair is judged from the traffic where a trainee could repair it (the firewall), and
from the service's state where only its admin could (the relay's and the ISP's MTA, the
forwarder).
"""
from __future__ import annotations

import ipaddress

from pydantic import BaseModel, ConfigDict

from lab.faults._checks import dns_query, outbound_repaired, smtp_repair, tcp_passes
from lab.faults._support import IPv4, age_caches, baseline_service, unused_address
from lab.faults.base import Cause, Fault, LabContext, NoParams, Repair
from lab.faults.dns import DELEGATION_TTL
from lab.faults.nat import _RuleMissing, find_rule


class _Params(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _mta(lab: LabContext, role: str):
    return lab.service(lab.roles.need(role), "smtp")


def _outside_message(lab: LabContext) -> tuple[str, str]:
    """(sender, recipient) of a test message from the partner to the company."""
    roles = lab.roles
    return (f"{roles.sender_mailbox or 'test'}@{roles.sender_domain or 'invalid'}",
            f"{roles.need('mailbox')}@{roles.need('mail_domain')}")


class RelayTransportWrong(Fault):
    name = "relay-transport-wrong"
    family = "isp"
    causes = (Cause("relay-transport-wrong", "relay's next hop wrong",
                    "the inbound relay hands the mail domain's mail to a wrong next hop "
                    "(its transport entry)", "server"),)
    where = "inbound_relay"
    description = ("${roles.inbound_relay}'s transport sends mail for ${roles.mail_domain} to "
                   "${params.nexthop}, where no mail server is, instead of ${roles.mail_private}")
    symptom = ("mail from outside is accepted (250) by ${roles.mail_host} but never arrives; "
               "mailq on ${roles.inbound_relay} shows it deferred: 'connect to "
               "${params.nexthop}[${params.nexthop}]:25: Connection timed out'")

    class Params(_Params):
        nexthop: IPv4 | None = None

    def drawn(self, rng, roles) -> dict:
        return {"nexthop": unused_address(rng, roles, roles.need("fw_internal_subnet"))}

    def _entries(self, lab) -> tuple[str, str]:
        """(the mail domain, the relay's healthy transport entry for it)."""
        domain = lab.roles.need("mail_domain")
        base = baseline_service(lab, lab.roles.need("inbound_relay"), "smtp")
        return domain, base.transport.get(domain, f"smtp:[{lab.roles.need('mail_private')}]")

    def _set(self, lab, entry: str, only_if: str) -> None:
        mta = _mta(lab, "inbound_relay")
        domain, _good = self._entries(lab)
        if mta.config.transport.get(domain) == only_if:
            mta.reconfigure(mta.config.model_copy(
                update={"transport": {**mta.config.transport, domain: entry}}))

    async def apply(self, lab, params) -> None:
        _domain, good = self._entries(lab)
        self._set(lab, f"smtp:[{params.nexthop}]", only_if=good)

    async def revert(self, lab, params) -> None:
        _domain, good = self._entries(lab)
        self._set(lab, good, only_if=f"smtp:[{params.nexthop}]")

    async def check_repaired(self, lab, params) -> Repair:
        domain = lab.roles.need("mail_domain")
        hop = _mta(lab, "inbound_relay").config.next_hop(domain)
        private = lab.roles.need("mail_private")
        ok = hop is not None and hop.host == private
        return Repair(ok, f"{lab.roles.inbound_relay} sends mail for {domain} to "
                          f"{hop or 'its MX hosts'} (the mail server is {private})")


class RelayDomainMissing(Fault):
    name = "relay-domain-missing"
    family = "isp"
    causes = (Cause("relay-domain-missing", "relay does not take the domain",
                    "the inbound relay no longer relays for the mail domain (its relay_domains "
                    "lost it)", "server"),)
    where = "inbound_relay"
    description = "${roles.mail_domain} is gone from ${roles.inbound_relay}'s relay domains"
    symptom = ("partners' mail to ${roles.mail_domain} bounces: ${roles.mail_host} answers "
               "RCPT TO with '554 5.7.1 <...@${roles.mail_domain}>: Relay access denied'; "
               "its mail.log shows NOQUEUE: reject")
    Params = NoParams

    def _set(self, lab, present: bool) -> None:
        mta = _mta(lab, "inbound_relay")
        domain = lab.roles.need("mail_domain")
        domains = [d for d in mta.config.relay_domains if d != domain]
        if present:
            base = baseline_service(lab, lab.roles.need("inbound_relay"), "smtp").relay_domains
            domains = [d for d in base if d == domain or d in domains]
        if domains != list(mta.config.relay_domains):
            mta.reconfigure(mta.config.model_copy(update={"relay_domains": domains}))

    async def apply(self, lab, params) -> None:
        self._set(lab, present=False)

    async def revert(self, lab, params) -> None:
        self._set(lab, present=True)

    async def check_repaired(self, lab, params) -> Repair:
        """A message from the internet to the mail domain is accepted by the relay."""
        roles = lab.roles
        client = roles.need("outside_client")
        server = roles.inbound_public or roles.need("inbound_private")
        sender, rcpt = _outside_message(lab)
        return await smtp_repair(lab, client, server, sender, rcpt,
                                 f"a message from {client} to {rcpt} through {server}:25")


class SmarthostRelayRefused(Fault):
    name = "smarthost-relay-refused"
    family = "isp"
    causes = (Cause("smarthost-relay-refused", "smarthost refuses relay",
                    "the ISP's smarthost no longer relays for the company's address",
                    "server"),)
    where = "smarthost"
    description = ("${roles.smarthost} (${roles.smarthost_host}) no longer relays for "
                   "${roles.fw_public}, the address the company's mail comes from")
    symptom = ("mail to outside addresses bounces: ${roles.mail_server}'s mail.log shows "
               "'host ${roles.smarthost_host}[${roles.smarthost_address}] said: 554 5.7.1 "
               "<...>: Relay access denied'; mail inside the company is fine")
    Params = NoParams

    def _customer(self, lab) -> ipaddress.IPv4Address:
        return ipaddress.IPv4Address(lab.roles.need("fw_public"))

    async def apply(self, lab, params) -> None:
        mta = _mta(lab, "smarthost")
        nets = [n for n in mta.config.relay_networks if self._customer(lab) not in n]
        if nets != list(mta.config.relay_networks):
            mta.reconfigure(mta.config.model_copy(update={"relay_networks": nets}))

    async def revert(self, lab, params) -> None:
        mta = _mta(lab, "smarthost")
        base = baseline_service(lab, lab.roles.need("smarthost"), "smtp").relay_networks
        gone = [n for n in base if self._customer(lab) in n and n not in mta.config.relay_networks]
        if gone:
            nets = [n for n in base if n in mta.config.relay_networks or n in gone]
            mta.reconfigure(mta.config.model_copy(update={"relay_networks": nets}))

    async def check_repaired(self, lab, params) -> Repair:
        """The mail server's session to the smarthost relays a message to the partner."""
        return await outbound_repaired(lab)


class ForwarderDead(Fault):
    name = "dns-forwarder-dead"
    family = "isp"
    causes = (Cause("dns-forwarder-dead", "DNS forwarder not answering",
                    "the internal DNS server forwards to a resolver that does not answer",
                    "dns"),)
    where = "internal_forwarder"
    description = ("${roles.internal_forwarder} forwards (forward only) to ${params.address}, "
                   "where no resolver answers, instead of ${roles.forwarders}")
    symptom = ("dig ${roles.sender_domain} MX on ${roles.internal_client} answers SERVFAIL "
               "while names of ${roles.mail_domain} resolve; tcpdump on "
               "${roles.internal_forwarder} shows its queries to ${params.address} unanswered; "
               "${roles.mail_server} defers outbound mail ('Name service error ... try again')")

    class Params(_Params):
        address: IPv4 | None = None

    def drawn(self, rng, roles) -> dict:
        return {"address": unused_address(rng, roles, roles.need("fw_external_subnet"))}

    def _svc(self, lab):
        return lab.service(lab.roles.need("internal_forwarder"), "dns")

    async def apply(self, lab, params) -> None:
        svc = self._svc(lab)
        if svc.forwarders == list(lab.roles.need("forwarders")):
            svc.set_forwarders([params.address])
            # the change is meant to be older than what the forwarder remembers
            age_caches(lab, ".", DELEGATION_TTL, nodes=[lab.roles.internal_forwarder])

    async def revert(self, lab, params) -> None:
        svc = self._svc(lab)
        if svc.forwarders == [params.address]:
            svc.set_forwarders(list(lab.roles.need("forwarders")))

    async def check_repaired(self, lab, params) -> Repair:
        """The forwarder answers an outside name for the internal client again."""
        roles = lab.roles
        client, server = roles.need("internal_client"), roles.need("internal_forwarder_address")
        name = roles.sender_domain or roles.need("smarthost_host")
        answer = await dns_query(lab, client, server, name, "MX")
        ok = answer.status in ("NOERROR", "NODATA", "NXDOMAIN")
        return Repair(ok, f"{name} MX from {client} through {server}: {answer.text()}")


class DmzPermitMissing(_RuleMissing):
    name = "fw-dmz-permit-missing"
    family = "isp"
    causes = (Cause("fw-dmz-permit-missing", "DMZ to LAN permit missing",
                    "no firewall rule lets the inbound relay in the DMZ reach the mail server "
                    "on the LAN", "firewall"),)
    description = ("the permit rule for SMTP from ${roles.inbound_relay} "
                   "(${roles.inbound_relay_address}) to ${roles.mail_private} is gone")
    symptom = ("mail from outside is accepted by ${roles.mail_host} but waits in "
               "${roles.inbound_relay}'s queue: 'connect to ${roles.mail_private}[...]:25: "
               "Connection timed out'; netguard -An shows D for "
               "${roles.inbound_relay_address} -> ${roles.mail_private}:25")

    def rule_of(self, lab, params) -> str:
        roles = lab.roles
        relay, private = roles.need("inbound_relay_address"), roles.need("mail_private")
        return find_rule(lab, f"permits SMTP from {relay} to {private}",
                         lambda r: r.from_ == relay and r.to == private
                         and r.proto in ("tcp", "any") and r.port in (25, None))

    def validate(self, params, roles) -> None:
        roles.need("inbound_relay")

    async def check_repaired(self, lab, params) -> Repair:
        roles = lab.roles
        return await tcp_passes(lab, roles.need("inbound_relay"), roles.need("mail_private"), 25)


FAULTS = [RelayTransportWrong(), RelayDomainMissing(), SmarthostRelayRefused(), ForwarderDead(),
          DmzPermitMissing()]
