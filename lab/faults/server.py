"""Faults on the internal hosts: the mail server's SMTP service and relay policy, a host's
default route, the mail server's resolver."""
from __future__ import annotations

import ipaddress
import json

from pydantic import BaseModel, ConfigDict

from lab.errors import LabError
from lab.faults._checks import dns_query, run_async, smtp_repair
from lab.faults._support import (
    IPv4,
    age_caches,
    baseline_service,
    read_nameservers,
    restore_item,
    run_ok,
    unused_address,
    write_nameservers,
)
from lab.faults.base import AnswerKey, Cause, Fault, LabContext, NoParams, Repair
from lab.faults.dns import DELEGATION_TTL


class _Params(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _mail(lab: LabContext) -> str:
    return lab.roles.need("mail_server")


def _address(lab: LabContext, mailbox: str = "mailbox", domain: str = "mail_domain") -> str:
    """A mail address from two roles: the test mailbox at the mail domain by default."""
    return f"{lab.roles.need(mailbox)}@{lab.roles.need(domain)}"


class SmtpDown(Fault):
    name = "smtp-service-down"
    family = "server"
    causes = (Cause("smtp-service-down", "SMTP service down",
                    "the mail server's SMTP service (or the inbound relay's) is not running",
                    "server"),)
    key_params = ("node",)
    description = "the SMTP service on ${params.node} is stopped"
    symptom = ("nothing answers SMTP on ${params.node} any more: telnet/nc to its port 25 is "
               "refused (from its own segment, or through the firewall); mail that has to pass "
               "it waits in the queue before it, or at a backup MX")

    class Params(_Params):
        node: str | None = None

    def variants(self, roles) -> list[dict]:
        """The mail server, and the inbound relay in front of it if there is one."""
        return [{"node": n} for n in (roles.mail_server, roles.inbound_relay) if n] or [{}]

    def answer(self, params, roles) -> AnswerKey:
        return AnswerKey(self.causes[0].id, params.node or roles.need("mail_server"))

    def validate(self, params, roles) -> None:
        node = self.answer(params, roles).node
        if node not in (roles.mail_server, roles.inbound_relay):
            names = ", ".join(n for n in (roles.mail_server, roles.inbound_relay) if n)
            raise LabError(f"node {node} is not a mail server of topology {roles.topology}",
                           hint=f"nodes: {names}")

    def _svc(self, lab, params):
        self.validate(params, lab.roles)
        return lab.service(self.answer(params, lab.roles).node, "smtp")

    async def apply(self, lab, params) -> None:
        await self._svc(lab, params).stop()  # stopping a stopped server: no change

    async def revert(self, lab, params) -> None:
        svc = self._svc(lab, params)
        if not await svc.healthy():
            await svc.stop()
            await svc.start()

    async def check_repaired(self, lab, params) -> Repair:
        """The server accepts mail again, asked the way its mail comes: the mail server
        from the internal client, an inbound relay from the internet."""
        roles = lab.roles
        node = self.answer(params, roles).node
        rcpt = _address(lab)
        if node == roles.mail_server:
            client, server = roles.need("internal_client"), roles.need("mail_private")
        else:
            client = roles.need("outside_client")
            server = roles.inbound_public or roles.need("inbound_private")
        return await smtp_repair(lab, client, server, rcpt, rcpt,
                                 f"a message from {client} to {rcpt} through {server}:25")


def _lan(lab: LabContext) -> ipaddress.IPv4Network:
    return ipaddress.IPv4Network(lab.roles.need("fw_internal_subnet"))


class RelayRefused(Fault):
    name = "smtp-relay-refused"
    family = "server"
    causes = (Cause("smtp-relay-refused", "relay refused for LAN",
                    "the mail server refuses to relay mail for its own LAN", "server"),)
    where = "mail_server"
    description = "${roles.mail_server} no longer relays for the LAN (its relay networks lost it)"
    symptom = ("submitting mail for an outside domain to ${roles.mail_private} from "
               "${roles.internal_client} gets '554 5.7.1 Relay access denied'; mail.log shows "
               "NOQUEUE: reject")
    Params = NoParams

    async def apply(self, lab, params) -> None:
        svc = lab.service(_mail(lab), "smtp")
        lan = _lan(lab)
        nets = [n for n in svc.config.relay_networks if not n.overlaps(lan)]
        if nets != list(svc.config.relay_networks):
            # the server reads its config for every RCPT, as postfix reads main.cf on reload
            svc.reconfigure(svc.config.model_copy(update={"relay_networks": nets}))

    async def revert(self, lab, params) -> None:
        svc = lab.service(_mail(lab), "smtp")
        lan = _lan(lab)
        base = list(baseline_service(lab, _mail(lab), "smtp").relay_networks)
        nets = list(svc.config.relay_networks)
        for net in base:
            if net.overlaps(lan):
                nets = restore_item(nets, base, net, key=str)
        if nets != list(svc.config.relay_networks):
            svc.reconfigure(svc.config.model_copy(update={"relay_networks": nets}))

    async def check_repaired(self, lab, params) -> Repair:
        roles = lab.roles
        client, server = roles.need("internal_client"), roles.need("mail_private")
        sender = _address(lab)
        rcpt = _address(lab, "sender_mailbox", "sender_domain")
        return await smtp_repair(lab, client, server, sender, rcpt,
                                 f"a message from {client} for {rcpt} submitted to {server}:25")


async def default_route(lab: LabContext, node: str) -> dict | None:
    _rc, out, _err = await run_async(lab, node, ["ip", "-j", "-4", "route", "show", "default"])
    routes = json.loads(out or "[]")
    return routes[0] if routes else None


def default_route_now(lab: LabContext, node: str) -> dict | None:
    out = run_ok(lab, node, ["ip", "-j", "-4", "route", "show", "default"])
    routes = json.loads(out or "[]")
    return routes[0] if routes else None


class GatewayWrong(Fault):
    name = "host-gateway-wrong"
    family = "server"
    causes = (Cause("host-gateway-wrong", "default gateway wrong",
                    "a host's default gateway is wrong, so it cannot reach other segments",
                    "network"),)
    key_params = ("node",)
    description = "${params.node}'s default route points at ${params.gateway}, not the firewall"
    symptom = ("ip route on ${params.node} shows the default gateway ${params.gateway}, not "
               "${roles.fw_private}; ping of the gateway fails; ${params.node} reaches nothing "
               "outside the LAN")

    class Params(_Params):
        node: str | None = None
        gateway: IPv4 | None = None

    def variants(self, roles) -> list[dict]:
        """The hosts behind the firewall that mail depends on and that route through it:
        the mail server, an inbound relay, the internal resolvers."""
        hosts = [roles.mail_server, roles.inbound_relay, *roles.internal_resolvers]
        return [{"node": n} for n in dict.fromkeys(hosts)
                if n and roles.topo.nodes[n].gateway is not None] or [{}]

    def drawn(self, rng, roles) -> dict:
        return {"gateway": unused_address(rng, roles, roles.need("fw_internal_subnet"))}

    def draw(self, rng, roles, variant=None):
        """The wrong gateway is drawn on the node's own segment (a DMZ host's in the DMZ)."""
        params = super().draw(rng, roles, variant)
        node = params.node or roles.need("mail_server")
        if roles.topo is not None and node in roles.topo.nodes:
            subnet = str(roles.topo.nodes[node].interfaces[0].address.network)
            if subnet != roles.fw_internal_subnet:
                params = params.model_copy(update={"gateway": unused_address(rng, roles,
                                                                             subnet)})
        return params

    def answer(self, params, roles) -> AnswerKey:
        return AnswerKey(self.causes[0].id, params.node or roles.need("mail_server"))

    def validate(self, params, roles) -> None:
        node = self.answer(params, roles).node
        if node not in roles.topo.nodes:
            raise LabError(f"unknown node '{node}'", hint="nodes: " + ", ".join(roles.topo.nodes))
        if roles.topo.nodes[node].gateway is None:
            raise LabError(f"node {node} has no default gateway in topology {roles.topology}")

    def _good(self, lab, params) -> tuple[str, str]:
        self.validate(params, lab.roles)
        node = self.answer(params, lab.roles).node
        return node, str(lab.topo.nodes[node].gateway)

    async def apply(self, lab, params) -> None:
        node, _good = self._good(lab, params)
        route = default_route_now(lab, node)
        if route is None or route.get("gateway") != params.gateway:
            run_ok(lab, node, ["ip", "route", "replace", "default", "via", params.gateway])
            # a name server cut off is meant to have been so for longer than it remembers
            age_caches(lab, ".", DELEGATION_TTL, nodes=[node])

    async def revert(self, lab, params) -> None:
        node, good = self._good(lab, params)
        route = default_route_now(lab, node)
        if route is not None and route.get("gateway") == params.gateway:
            run_ok(lab, node, ["ip", "route", "replace", "default", "via", good])

    async def check_repaired(self, lab, params) -> Repair:
        node, good = self._good(lab, params)
        route = await default_route(lab, node)
        now = route.get("gateway") if route else None
        return Repair(now == good, f"{node}'s default route: " + (
            f"via {now}" if now else "none") + f" (the gateway is {good})")


class ResolverWrong(Fault):
    name = "host-resolver-wrong"
    family = "server"
    causes = (Cause("host-resolver-wrong", "resolver wrong or unreachable",
                    "a host's configured name server is wrong or cannot be reached", "dns"),)
    where = "mail_server"
    description = ("${roles.mail_server}'s /etc/resolv.conf names ${params.nameserver}, a "
                   "name server that does not answer")
    symptom = ("dig/nslookup on ${roles.mail_server} time out ('no servers could be "
               "reached'); it defers outbound mail with 'Name service error ... try again'")

    class Params(_Params):
        nameserver: IPv4 | None = None

    def drawn(self, rng, roles) -> dict:
        return {"nameserver": unused_address(rng, roles, roles.need("fw_internal_subnet"))}

    async def apply(self, lab, params) -> None:
        write_nameservers(lab, _mail(lab), [params.nameserver])

    async def revert(self, lab, params) -> None:
        node = _mail(lab)
        _path, _lines, current = read_nameservers(lab, node)
        if current == [params.nameserver]:
            write_nameservers(lab, node, [str(a) for a in lab.topo.nodes[node].nameservers])

    async def check_repaired(self, lab, params) -> Repair:
        """The first name server of the mail server's resolv.conf answers it again."""
        node = _mail(lab)
        _path, _lines, servers = read_nameservers(lab, node)
        if not servers:
            return Repair(False, f"{node}'s /etc/resolv.conf names no nameserver")
        name = lab.roles.sender_domain or lab.roles.need("mail_domain")
        answer = await dns_query(lab, node, servers[0], name, "MX")
        ok = answer.status not in ("timeout", "REFUSED")
        return Repair(ok, f"{name} MX on {node} (nameserver {servers[0]}): {answer.status}")


FAULTS = [SmtpDown(), RelayRefused(), GatewayWrong(), ResolverWrong()]
