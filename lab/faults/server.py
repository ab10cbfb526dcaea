"""Faults on the internal mail server: its SMTP service, relay policy, route and resolver."""
from __future__ import annotations

import ipaddress
import json

from pydantic import BaseModel, ConfigDict

from lab.faults._support import (
    MX,
    IPv4,
    baseline_service,
    read_nameservers,
    restore_item,
    run_ok,
    write_nameservers,
)
from lab.faults.base import AnswerKey, Fault, LabContext, NoParams


class _Params(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SmtpDown(Fault):
    name = "smtp-service-down"
    family = "server"
    description = "the SMTP service on mx is stopped"
    symptom = ("telnet/nc to 10.1.0.25:25 is refused (from fw, admin, or through the "
               "static NAT from the internet); nothing gets delivered in either direction")
    Params = NoParams

    def answer(self, params) -> AnswerKey:
        return AnswerKey("smtp-service-down", MX)

    async def apply(self, lab, params) -> None:
        await lab.service(MX, "smtp").stop()  # stopping a stopped server changes nothing

    async def revert(self, lab, params) -> None:
        svc = lab.service(MX, "smtp")
        if not await svc.healthy():
            await svc.stop()
            await svc.start()


def _lan(lab: LabContext) -> ipaddress.IPv4Network:
    return lab.topo.nodes[MX].interfaces[0].address.network


class RelayRefused(Fault):
    name = "smtp-relay-refused"
    family = "server"
    description = "mx no longer relays for the LAN (its relay networks lost the LAN)"
    symptom = ("submitting mail for an outside domain to 10.1.0.25 from admin gets "
               "'554 5.7.1 Relay access denied'; mail.log shows NOQUEUE: reject")
    Params = NoParams

    def answer(self, params) -> AnswerKey:
        return AnswerKey("smtp-relay-refused", MX)

    async def apply(self, lab, params) -> None:
        svc = lab.service(MX, "smtp")
        lan = _lan(lab)
        nets = [n for n in svc.config.relay_networks if not n.overlaps(lan)]
        if nets != list(svc.config.relay_networks):
            # the server reads its config for every RCPT, as postfix reads main.cf on reload
            svc.reconfigure(svc.config.model_copy(update={"relay_networks": nets}))

    async def revert(self, lab, params) -> None:
        svc = lab.service(MX, "smtp")
        lan = _lan(lab)
        base = list(baseline_service(lab, MX, "smtp").relay_networks)
        nets = list(svc.config.relay_networks)
        for net in base:
            if net.overlaps(lan):
                nets = restore_item(nets, base, net, key=str)
        if nets != list(svc.config.relay_networks):
            svc.reconfigure(svc.config.model_copy(update={"relay_networks": nets}))


def default_route(lab: LabContext, node: str) -> dict | None:
    out = run_ok(lab, node, ["ip", "-j", "-4", "route", "show", "default"])
    routes = json.loads(out or "[]")
    return routes[0] if routes else None


class GatewayWrong(Fault):
    name = "host-gateway-wrong"
    family = "server"
    description = "mx's default route points at an address that is not the firewall"
    symptom = ("ip route on mx shows a default gateway other than 10.1.0.1; ping of the "
               "gateway fails; mx reaches nothing outside the LAN and cannot answer outsiders")

    class Params(_Params):
        gateway: IPv4 = "10.1.0.254"

    def answer(self, params) -> AnswerKey:
        return AnswerKey("host-gateway-wrong", MX)

    async def apply(self, lab, params) -> None:
        route = default_route(lab, MX)
        if route is None or route.get("gateway") != params.gateway:
            run_ok(lab, MX, ["ip", "route", "replace", "default", "via", params.gateway])

    async def revert(self, lab, params) -> None:
        good = lab.topo.nodes[MX].gateway
        route = default_route(lab, MX)
        if good is not None and route is not None and route.get("gateway") == params.gateway:
            run_ok(lab, MX, ["ip", "route", "replace", "default", "via", str(good)])


class ResolverWrong(Fault):
    name = "host-resolver-wrong"
    family = "server"
    description = "mx's /etc/resolv.conf names a name server that does not answer"
    symptom = ("dig/nslookup on mx time out ('no servers could be reached'); mx defers "
               "outbound mail with 'Name service error ... try again'")

    class Params(_Params):
        nameserver: IPv4 = "10.1.0.54"

    def answer(self, params) -> AnswerKey:
        return AnswerKey("host-resolver-wrong", MX)

    async def apply(self, lab, params) -> None:
        write_nameservers(lab, MX, [params.nameserver])

    async def revert(self, lab, params) -> None:
        _path, _lines, current = read_nameservers(lab, MX)
        if current == [params.nameserver]:
            write_nameservers(lab, MX, [str(a) for a in lab.topo.nodes[MX].nameservers])


FAULTS = [SmtpDown(), RelayRefused(), GatewayWrong(), ResolverWrong()]
