"""Link faults: a node's interface down, heavy random packet loss on it.

Which link is drawn from the links of the mail path: the mail server's, and the
firewall's on either side. This kernel has no netem qdisc: loss is an nftables table of the node's own, with ``numgen random`` rules on the
interface's ingress and egress hooks, named like any ordinary filter table.
"""
from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from lab.errors import LabError
from lab.faults._checks import ping, run_async
from lab.faults._support import run_ok
from lab.faults.base import AnswerKey, Cause, Fault, LabContext, Repair
from lab.model.roles import Roles

LOSS_TABLE = ("netdev", "filter")


class _NodeParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    node: str | None = None
    interface: str | None = None


def mail_path_links(roles: Roles) -> list[dict]:
    """(node, interface) of every link on the mail path: the mail server's, the
    firewall's external and internal ones, and an inbound relay's and the firewall's DMZ
    link where there is a DMZ."""
    out = []
    if roles.mail_server:
        for i, _intf in enumerate(roles.topo.nodes[roles.mail_server].interfaces):
            out.append({"node": roles.mail_server, "interface": f"eth{i}"})
    if roles.firewall:
        for ifname in (roles.fw_external_if, roles.fw_internal_if):
            if ifname:
                out.append({"node": roles.firewall, "interface": ifname})
    if roles.inbound_relay:
        for i, _intf in enumerate(roles.topo.nodes[roles.inbound_relay].interfaces):
            out.append({"node": roles.inbound_relay, "interface": f"eth{i}"})
    if roles.firewall and roles.fw_dmz_if:
        out.append({"node": roles.firewall, "interface": roles.fw_dmz_if})
    return out or [{}]


def _check(lab: LabContext, params) -> tuple[str, str]:
    _valid(params, lab.roles)
    lab.node(params.node)
    return params.node, params.interface


def _valid(params, roles: Roles) -> None:
    if params.node is None or params.interface is None:
        raise LabError("a link fault needs a node and an interface")
    if params.node not in roles.topo.nodes:
        raise LabError(f"unknown node '{params.node}'",
                       hint="nodes: " + ", ".join(roles.topo.nodes))
    names = [f"eth{i}" for i in range(len(roles.topo.nodes[params.node].interfaces))]
    if params.interface not in names:
        raise LabError(f"node {params.node} has no interface {params.interface}",
                       hint="interfaces: " + ", ".join(names))


def _up(out: str) -> bool:
    return "<" in out and "UP" in out.split("<", 1)[1].split(">", 1)[0].split(",")


def _link_up(lab: LabContext, node: str, interface: str) -> bool:
    return _up(run_ok(lab, node, ["ip", "-o", "link", "show", "dev", interface]))


def own_routes(lab: LabContext, node: str, interface: str) -> list[tuple[str, str]]:
    """(destination, via) of the node's topology routes through ``interface``."""
    spec = lab.topo.nodes[node]
    subnet = spec.interfaces[int(interface[3:])].address.network
    wanted = [(str(r.to), str(r.via)) for r in spec.routes if r.via in subnet]
    if spec.gateway is not None and spec.gateway in subnet:
        wanted.insert(0, ("default", str(spec.gateway)))
    return wanted


class _LinkFault(Fault):
    family = "links"
    key_params = ("interface",)
    Params = _NodeParams

    def variants(self, roles) -> list[dict]:
        return mail_path_links(roles)

    def answer(self, params, roles) -> AnswerKey:
        return AnswerKey(self.causes[0].id, params.node or roles.need("mail_server"))

    def validate(self, params, roles) -> None:
        _valid(params, roles)


class LinkDown(_LinkFault):
    name = "link-down"
    causes = (Cause("link-down", "link down",
                    "a link between a node and its segment is down", "network"),)
    description = "${params.node}'s interface ${params.interface} is administratively down"
    symptom = ("ip link on ${params.node} shows ${params.interface} DOWN and it has no "
               "routes; ping through that link fails")

    async def apply(self, lab, params) -> None:
        node, ifname = _check(lab, params)
        if _link_up(lab, node, ifname):
            run_ok(lab, node, ["ip", "link", "set", "dev", ifname, "down"])

    async def revert(self, lab, params) -> None:
        node, ifname = _check(lab, params)
        if _link_up(lab, node, ifname):
            return
        run_ok(lab, node, ["ip", "link", "set", "dev", ifname, "up"])
        # the kernel dropped the routes through the link: put back the node's own
        for to, via in own_routes(lab, node, ifname):
            rc, out, _ = lab.run(node, ["ip", "-4", "route", "show", to], None)
            if rc == 0 and not out.strip():
                run_ok(lab, node, ["ip", "route", "add", to, "via", via, "dev", ifname])

    async def check_repaired(self, lab, params) -> Repair:
        """The interface is up again and the node's routes through it are back."""
        node, ifname = _check(lab, params)
        _rc, out, _err = await run_async(lab, node, ["ip", "-o", "link", "show", "dev", ifname])
        up = _up(out)
        missing = []
        for to, via in own_routes(lab, node, ifname):
            _rc, routes, _err = await run_async(lab, node, ["ip", "-4", "route", "show", to])
            if f"via {via}" not in routes:
                missing.append(f"{to} via {via}")
        how = f"ip link on {node}: {ifname} {'UP' if up else 'DOWN'}"
        if missing:
            how += "; routes missing: " + ", ".join(missing)
        return Repair(up and not missing, how)


class PacketLoss(_LinkFault):
    name = "link-packet-loss"
    causes = (Cause("link-packet-loss", "packet loss",
                    "a link drops a large share of its packets", "network"),)
    description = ("heavy random packet loss (${params.percent} % each way) on "
                   "${params.node}'s ${params.interface}")
    symptom = ("ping through ${params.node}'s ${params.interface} loses most packets; SMTP "
               "sessions stall and time out, DNS queries need retries")

    class Params(_NodeParams):
        percent: int | None = Field(default=None, ge=1, le=100)

    def drawn(self, rng, roles) -> dict:
        return {"percent": rng.choice([40, 50, 60, 70, 80])}

    def _ruleset(self, params) -> str:
        family, table = LOSS_TABLE
        dev = params.interface
        chains = []
        for hook in ("ingress", "egress"):
            chains.append(
                f"\tchain {hook} {{\n"
                f"\t\ttype filter hook {hook} device \"{dev}\" priority -500; policy accept;\n"
                f"\t\tnumgen random mod 100 < {params.percent} drop\n"
                f"\t}}\n")
        return (f"table {family} {table}\ndelete table {family} {table}\n"
                f"table {family} {table} {{\n" + "\n".join(chains) + "}\n")

    def _present(self, lab, node: str) -> str | None:
        family, table = LOSS_TABLE
        rc, out, _ = lab.run(node, ["nft", "list", "table", family, table], None)
        return out if rc == 0 else None

    async def apply(self, lab, params) -> None:
        node, ifname = _check(lab, params)
        current = self._present(lab, node)
        if current is not None and f"< {params.percent} drop" in current \
                and f'device "{ifname}"' in current:
            return
        run_ok(lab, node, ["nft", "-f", "-"], self._ruleset(params))

    async def revert(self, lab, params) -> None:
        node, ifname = _check(lab, params)
        current = self._present(lab, node)
        if current is not None and "numgen random mod 100" in current \
                and f'device "{ifname}"' in current:
            family, table = LOSS_TABLE
            run_ok(lab, node, ["nft", "delete", "table", family, table])

    async def check_repaired(self, lab, params) -> Repair:
        """A burst of pings over the link from a neighbour on its segment all come back."""
        node, ifname = _check(lab, params)
        peer, address = _neighbour(lab, node, ifname)
        sent, received = await ping(lab, peer, address, count=10, interval=0.05)
        return Repair(sent > 0 and received == sent,
                      f"ping from {peer} to {node} ({address}, {ifname}): {received} of "
                      f"{sent} answered")


def _neighbour(lab: LabContext, node: str, ifname: str) -> tuple[str, str]:
    """A node on the same segment to ping ``node``'s ``ifname`` from (a client if there
    is one: the firewall's own ICMP may be what another fault blocks), and the address."""
    intf = lab.topo.nodes[node].interfaces[int(ifname[3:])]
    others = [n for n, spec in lab.topo.nodes.items() if n != node
              and any(i.segment == intf.segment for i in spec.interfaces)]
    if not others:
        raise LabError(f"nothing shares {node}'s {ifname} segment to ping it from")
    roles = lab.roles
    preferred = [n for n in (roles.internal_client, roles.outside_client) if n in others]
    return (preferred or others)[0], str(intf.address.ip)


FAULTS = [LinkDown(), PacketLoss()]
