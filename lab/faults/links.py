"""Link faults: a node's interface down, heavy random packet loss on it.

This kernel has no netem (../shared/PLATFORM.md): loss is an nftables table of the node's
own, with ``numgen random`` rules on the interface's ingress and egress hooks, named like
any ordinary filter table.
"""
from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from lab.errors import LabError
from lab.faults._support import MX, run_ok
from lab.faults.base import AnswerKey, Fault, LabContext

LOSS_TABLE = ("netdev", "filter")


class _NodeParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    node: str = MX
    interface: str = "eth0"


def _check(lab: LabContext, params) -> None:
    lab.node(params.node)  # an unknown node: LabError
    names = [f"eth{i}" for i in range(len(lab.topo.nodes[params.node].interfaces))]
    if params.interface not in names:
        raise LabError(f"node {params.node} has no interface {params.interface}",
                       hint="interfaces: " + ", ".join(names))


def _link_up(lab: LabContext, node: str, interface: str) -> bool:
    out = run_ok(lab, node, ["ip", "-o", "link", "show", "dev", interface])
    return "<" in out and "UP" in out.split("<", 1)[1].split(">", 1)[0].split(",")


class LinkDown(Fault):
    name = "link-down"
    family = "links"
    description = "a node's network interface is administratively down"
    symptom = ("ip link on the node shows the interface DOWN and it has no routes; ping to "
               "and from the node fails")
    Params = _NodeParams

    def answer(self, params) -> AnswerKey:
        return AnswerKey("link-down", params.node)

    async def apply(self, lab, params) -> None:
        _check(lab, params)
        if _link_up(lab, params.node, params.interface):
            run_ok(lab, params.node, ["ip", "link", "set", "dev", params.interface, "down"])

    async def revert(self, lab, params) -> None:
        _check(lab, params)
        if _link_up(lab, params.node, params.interface):
            return
        run_ok(lab, params.node, ["ip", "link", "set", "dev", params.interface, "up"])
        # the kernel dropped the routes through the link: put back the node's own
        node = lab.topo.nodes[params.node]
        index = int(params.interface[3:])
        subnet = node.interfaces[index].address.network
        wanted = [(str(r.to), str(r.via)) for r in node.routes if r.via in subnet]
        if node.gateway is not None and node.gateway in subnet:
            wanted.insert(0, ("default", str(node.gateway)))
        for to, via in wanted:
            rc, out, _ = lab.run(params.node, ["ip", "-4", "route", "show", to], None)
            if rc == 0 and not out.strip():
                run_ok(lab, params.node, ["ip", "route", "add", to, "via", via,
                                          "dev", params.interface])


class PacketLoss(Fault):
    name = "link-packet-loss"
    family = "links"
    description = "heavy random packet loss on a node's link (both directions)"
    symptom = ("ping to the node loses most packets; SMTP sessions stall and time out, DNS "
               "queries need retries")

    class Params(_NodeParams):
        percent: int = Field(default=60, ge=1, le=100)

    def answer(self, params) -> AnswerKey:
        return AnswerKey("link-packet-loss", params.node)

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

    def _present(self, lab, params) -> str | None:
        family, table = LOSS_TABLE
        rc, out, _ = lab.run(params.node, ["nft", "list", "table", family, table], None)
        return out if rc == 0 else None

    async def apply(self, lab, params) -> None:
        _check(lab, params)
        current = self._present(lab, params)
        if current is not None and f"< {params.percent} drop" in current \
                and f'device "{params.interface}"' in current:
            return
        run_ok(lab, params.node, ["nft", "-f", "-"], self._ruleset(params))

    async def revert(self, lab, params) -> None:
        _check(lab, params)
        current = self._present(lab, params)
        if current is not None and "numgen random mod 100" in current \
                and f'device "{params.interface}"' in current:
            family, table = LOSS_TABLE
            run_ok(lab, params.node, ["nft", "delete", "table", family, table])


FAULTS = [LinkDown(), PacketLoss()]
