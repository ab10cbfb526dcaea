"""How each role is derived from a topology's services (see lab/model/roles.py).

``derive(topo)`` returns the role fields as a mapping; each part (the firewall and its
sides, the mail server and its domain, the DNS servers, the clients) is a small function
reading the raw ``services:`` mappings, so that it also works on a topology whose service
configs are not valid yet (``lab validate`` shows those errors on their own).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from dnslib import QTYPE

from lab.protocols.zonefile import ZoneError, parse_record

if TYPE_CHECKING:
    from lab.model.roles import RoleNames
    from lab.model.topology import Node, Topology


def derive(topo: Topology) -> dict[str, Any]:
    """Every role field of ``topo``: its ``roles:`` block first, derived otherwise."""
    named = topo.roles
    out: dict[str, Any] = {"topology": topo.name, "topo": topo, "used_addresses": tuple(
        str(a) for node in topo.nodes.values() for a in node.addresses())}
    out.update(_firewall_roles(topo, named.firewall))
    inside, outside = out.get("inside", ()), out.get("outside", ())
    out.update(_mail_roles(topo, named, inside, out.get("firewall")))
    out.update(_dns_roles(topo, named, inside, outside, out.get("mail_domain")))
    out.update(_client_roles(topo, named, inside, outside))
    if out.get("mail_host") is None and out.get("mail_server"):
        out["mail_host"] = smtp_of(topo.nodes[out["mail_server"]]).get("hostname")
    return out


def _addr(topo: Topology, node: str | None, segment: str | None = None) -> str | None:
    if node is None or node not in topo.nodes:
        return None
    n = topo.nodes[node]
    for intf in n.interfaces:
        if segment is None or intf.segment == segment:
            return str(intf.address.ip)
    return str(n.interfaces[0].address.ip)


def _one(candidates: list[str]) -> str | None:
    return candidates[0] if len(candidates) == 1 else None


def smtp_of(node: Node) -> dict:
    return node.services.get("smtp") or {}


def dns_of(node: Node) -> dict:
    return node.services.get("dns") or {}


def _firewall_roles(topo: Topology, named: str | None) -> dict[str, Any]:
    fw = named or _one([n for n, node in topo.nodes.items() if "firewall" in node.services])
    if fw is None or fw not in topo.nodes:
        return {}
    cfg = topo.nodes[fw].services.get("firewall") or {}
    ext, internal = cfg.get("external"), cfg.get("internal")
    out: dict[str, Any] = {"firewall": fw, "fw_external": ext, "fw_internal": internal}
    node = topo.nodes[fw]
    for side, seg in (("external", ext), ("internal", internal)):
        try:
            ifname, intf = node.interface_on(seg)
        except KeyError:
            continue
        out[f"fw_{side}_if"] = ifname
        out[f"fw_{side}_subnet"] = str(intf.address.network)
        out["fw_public" if side == "external" else "fw_private"] = str(intf.address.ip)
    out["inside"] = _on_segment(topo, internal, fw)
    out["outside"] = _on_segment(topo, ext, fw)
    alerts = node.services.get("alerts")
    if isinstance(alerts, dict):
        out["alert_recipient"] = alerts.get("to")
    return out


def _on_segment(topo: Topology, segment: str | None, exclude: str) -> tuple[str, ...]:
    return tuple(name for name, node in topo.nodes.items() if name != exclude
                 and any(i.segment == segment for i in node.interfaces))


def _mail_roles(topo: Topology, named: RoleNames, inside: tuple[str, ...],
                fw: str | None) -> dict[str, Any]:
    server = named.mail_server or _one([n for n in inside if "smtp" in topo.nodes[n].services])
    if server is None or server not in topo.nodes:
        return {"mail_domain": named.mail_domain}
    smtp = smtp_of(topo.nodes[server])
    domain = named.mail_domain or next(iter(smtp.get("domains") or []), None)
    segment = None
    if fw is not None:
        segment = (topo.nodes[fw].services.get("firewall") or {}).get("internal")
    private = _addr(topo, server, segment)
    ifname = None
    if segment is not None:
        try:
            ifname = topo.nodes[server].interface_on(segment)[0]
        except KeyError:
            pass
    public = None
    if fw is not None:
        for entry in (topo.nodes[fw].services.get("firewall") or {}).get("static_nat") or []:
            if str(entry.get("private")) == private:
                public = str(entry.get("public"))
                break
    users = tuple(smtp.get("users") or ())
    return {"mail_server": server, "mail_domain": norm(domain), "mail_private": private,
            "mail_server_if": ifname, "mail_public": public, "mailboxes": users,
            "mailbox": test_mailbox(users)}


def test_mailbox(users: tuple[str, ...]) -> str | None:
    """The mailbox test mail goes to: postmaster (RFC 5321 makes every domain have one)
    when the server lists it, else its first mailbox."""
    return "postmaster" if "postmaster" in users else next(iter(users), None)


def norm(name: str | None) -> str | None:
    return name.strip().lower().rstrip(".") if isinstance(name, str) else None


def zone_records(node: Node, zone: str) -> list:
    """The parsed records of ``zone`` as the node's dns service has it ([] if none)."""
    zones = dns_of(node).get("zones") or {}
    for name, data in zones.items():
        if norm(name) == norm(zone):
            origin = name if name.endswith(".") else name + "."
            out = []
            for text in (data or {}).get("records") or []:
                try:
                    out.append(parse_record(text, origin, int(data.get("ttl", 300))))
                except ZoneError:
                    continue
            return out
    return []


def serves(node: Node, zone: str) -> bool:
    return any(norm(z) == norm(zone) for z in (dns_of(node).get("zones") or {}))


def _dns_roles(topo: Topology, named: RoleNames, inside: tuple[str, ...],
               outside: tuple[str, ...], domain: str | None) -> dict[str, Any]:
    nodes = topo.nodes
    out: dict[str, Any] = {}
    resolvers = tuple(n for n in outside if dns_of(nodes[n]).get("mode") == "recursive")
    out["public_resolvers"] = resolvers
    out["public_resolver"] = named.public_resolver or _one(list(resolvers))
    out["internal_resolvers"] = tuple(n for n in inside if "dns" in nodes[n].services
                                      and dns_of(nodes[n]).get("mode") in ("recursive", "split"))
    out["root_dns"] = named.root_dns or _one([n for n in nodes if serves(nodes[n], ".")])
    if domain is not None:
        out["public_dns"] = named.public_dns or _one(
            [n for n in outside if serves(nodes[n], domain)])
        out["internal_dns"] = named.internal_dns or _one(
            [n for n in inside if serves(nodes[n], domain)])
        out.update(_parent(topo, named.parent_dns, domain))
        if out["public_dns"] in nodes:
            out["mail_host"] = _mx_target(nodes[out["public_dns"]], domain)
    for role in ("public_dns", "internal_dns", "root_dns", "public_resolver"):
        out[f"{role}_address"] = _addr(topo, out.get(role))
    return out


def _parent(topo: Topology, named: str | None, domain: str) -> dict[str, Any]:
    """The node serving the closest enclosing zone that delegates ``domain`` (NS records)."""
    labels = domain.split(".")
    for i in range(1, len(labels) + 1):
        zone = ".".join(labels[i:]) or "."
        holders = [n for n, node in topo.nodes.items() if serves(node, zone) and any(
            rr.rtype == QTYPE.NS and norm(str(rr.rname)) == domain
            for rr in zone_records(node, zone))]
        if named in holders or (named is None and len(holders) == 1):
            parent = named or holders[0]
            return {"parent_dns": parent, "parent_zone": zone,
                    "parent_dns_address": _addr(topo, parent)}
    return {"parent_dns": named, "parent_dns_address": _addr(topo, named)}


def _mx_target(node: Node, domain: str) -> str | None:
    mx = [rr for rr in zone_records(node, domain)
          if rr.rtype == QTYPE.MX and norm(str(rr.rname)) == domain]
    if not mx:
        return None
    best = min(mx, key=lambda rr: rr.rdata.preference)
    return norm(str(best.rdata.label))


def _client_roles(topo: Topology, named: RoleNames, inside: tuple[str, ...],
                  outside: tuple[str, ...]) -> dict[str, Any]:
    nodes = topo.nodes
    sender = named.sender or _one([n for n in outside if "smtp" in nodes[n].services])
    bare_out = [n for n in outside if not nodes[n].services]
    bare_in = [n for n in inside if not nodes[n].services]
    out: dict[str, Any] = {
        "sender": sender,
        "outside_client": named.outside_client or next(iter(bare_out), None),
        "internal_client": named.internal_client or next(iter(bare_in), None),
    }
    if sender in nodes:
        smtp = smtp_of(nodes[sender])
        out["sender_domain"] = norm(next(iter(smtp.get("domains") or []), None))
        out["sender_mailboxes"] = tuple(smtp.get("users") or ())
        out["sender_mailbox"] = test_mailbox(out["sender_mailboxes"])
    for role in ("sender", "outside_client", "internal_client"):
        out[f"{role}_address"] = _addr(topo, out.get(role))
    return out
