"""How each role is derived from a topology's services (see lab/model/roles.py).

``derive(topo)`` returns the role fields as a mapping; each part (the firewall and its
sides, the mail server and its domain, the DNS servers, the clients) is a small function
reading the raw ``services:`` mappings, so that it also works on a topology whose service
configs are not valid yet (``lab validate`` shows those errors on their own).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from dnslib import QTYPE

from lab.protocols.masterfile import load_records
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
    out.update(_isp_roles(topo, named, outside, out.get("mail_domain"), out.get("mail_server")))
    out.update(_inbound_roles(topo, named, (*out.get("dmz", ()), *inside), out))
    out.update(_client_roles(topo, named, inside, outside,
                             {out.get("backup_mx"), out.get("smarthost")}))
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
    ext, internal, dmz = cfg.get("external"), cfg.get("internal"), cfg.get("dmz")
    out: dict[str, Any] = {"firewall": fw, "fw_external": ext, "fw_internal": internal,
                           "fw_dmz": dmz}
    node = topo.nodes[fw]
    own = {"external": "fw_public", "internal": "fw_private", "dmz": "fw_dmz_address"}
    for side, seg in (("external", ext), ("internal", internal), ("dmz", dmz)):
        try:
            ifname, intf = node.interface_on(seg)
        except KeyError:
            continue
        out[f"fw_{side}_if"] = ifname
        out[f"fw_{side}_subnet"] = str(intf.address.network)
        out[own[side]] = str(intf.address.ip)
    out["inside"] = _on_segment(topo, internal, fw)
    out["outside"] = _on_segment(topo, ext, fw)
    out["dmz"] = _on_segment(topo, dmz, fw) if dmz else ()
    alerts = node.services.get("alerts")
    if isinstance(alerts, dict):
        out["alert_recipient"] = alerts.get("to")
        out["alert_server"] = norm(alerts.get("mail_server"))
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
    public = static_public(topo, fw, private)
    users = tuple(smtp.get("users") or ())
    return {"mail_server": server, "mail_domain": norm(domain), "mail_private": private,
            "mail_server_host": norm(smtp.get("hostname")),
            "mail_server_if": ifname, "mail_public": public, "mailboxes": users,
            "mailbox": test_mailbox(users)}


def static_public(topo: Topology, fw: str | None, private: str | None) -> str | None:
    """The firewall's static-NAT public address for ``private`` (None: there is none)."""
    if fw is None or private is None:
        return None
    for entry in (topo.nodes[fw].services.get("firewall") or {}).get("static_nat") or []:
        if isinstance(entry, dict) and str(entry.get("private")) == private:
            return str(entry.get("public"))
    return None


def _relays_for(node: Node, domain: str | None) -> bool:
    return domain is not None and domain in [norm(d) for d in
                                             smtp_of(node).get("relay_domains") or []]


def _isp_roles(topo: Topology, named: RoleNames, outside: tuple[str, ...],
               domain: str | None, server: str | None) -> dict[str, Any]:
    """The outside mail servers that serve the organisation: a backup MX that relays for
    the mail domain, the smarthost its mail server relays through."""
    nodes = topo.nodes
    backup = named.backup_mx or _one([n for n in outside if "smtp" in nodes[n].services
                                      and _relays_for(nodes[n], domain)])
    out: dict[str, Any] = {"backup_mx": backup, "backup_mx_address": _addr(topo, backup)}
    if backup in nodes:
        out["backup_mx_host"] = norm(smtp_of(nodes[backup]).get("hostname"))
    relayhost = smtp_of(nodes[server]).get("relayhost") if server in nodes else None
    host = _nexthop_host(relayhost)
    smarthost = named.smarthost or _node_named(topo, host)
    out.update({"smarthost": smarthost, "smarthost_address": _addr(topo, smarthost),
                "smarthost_host": host})
    return out


def _nexthop_host(relayhost: object) -> str | None:
    """The host of a relayhost (``[smtp.example]:25`` -> ``smtp.example``)."""
    if not isinstance(relayhost, str) or not relayhost.strip():
        return None
    text = relayhost.strip()
    host = text[1:text.index("]")] if text.startswith("[") and "]" in text else \
        text.split(":")[0]
    return norm(host)


def _node_named(topo: Topology, host: str | None) -> str | None:
    """The node a host name (its smtp hostname) or address refers to."""
    if host is None:
        return None
    for name, node in topo.nodes.items():
        if norm(smtp_of(node).get("hostname")) == host or \
                host in (str(a) for a in node.addresses()):
            return name
    return None


def _inbound_roles(topo: Topology, named: RoleNames, behind: tuple[str, ...],
                   out: dict[str, Any]) -> dict[str, Any]:
    """Where mail from the internet enters behind the firewall: an inbound relay (a node
    behind the firewall relaying for the mail domain), else the mail server itself."""
    nodes, server = topo.nodes, out.get("mail_server")
    relay = named.inbound_relay or _one([n for n in behind if n != server and "smtp" in
                                         nodes[n].services
                                         and _relays_for(nodes[n], out.get("mail_domain"))])
    entry = relay if relay in nodes else server
    if entry not in nodes:
        return {"inbound_relay": relay}
    segment = next((s for s in (out.get("fw_dmz"), out.get("fw_internal"))
                    if any(i.segment == s for i in nodes[entry].interfaces)), None)
    private = _addr(topo, entry, segment)
    subnet = next((str(i.address.network) for i in nodes[entry].interfaces
                   if i.segment == segment), None)
    return {"inbound_relay": relay, "inbound_relay_address": _addr(topo, relay),
            "inbound_server": entry, "inbound_private": private, "inbound_subnet": subnet,
            "inbound_public": static_public(topo, out.get("firewall"), private)}


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
            data = data or {}
            origin = name if name.endswith(".") else name + "."
            if isinstance(data.get("master"), str):  # a master file (zone_file)
                try:
                    return load_records(name, data["master"], data.get("includes") or {},
                                        int(data.get("ttl", 300)))
                except (ZoneError, TypeError, ValueError):
                    return []
            out = []
            for text in data.get("records") or []:
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
    forwarder = named.internal_forwarder or _one(
        [n for n in out["internal_resolvers"] if dns_of(nodes[n]).get("forwarders")])
    out["internal_forwarder"] = forwarder
    if forwarder in nodes:
        out["forwarders"] = tuple(str(a) for a in dns_of(nodes[forwarder]).get("forwarders"))
    out["root_dns"] = named.root_dns or _one([n for n in nodes if serves(nodes[n], ".")])
    if domain is not None:
        out["public_dns"] = named.public_dns or _one(
            [n for n in outside if serves(nodes[n], domain)])
        out["internal_dns"] = named.internal_dns or _one(
            [n for n in inside if serves(nodes[n], domain)])
        out.update(_parent(topo, named.parent_dns, domain))
        if out["public_dns"] in nodes:
            out["mail_host"] = _mx_target(nodes[out["public_dns"]], domain)
    for role in ("public_dns", "internal_dns", "root_dns", "public_resolver",
                 "internal_forwarder"):
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
                  outside: tuple[str, ...], isp: set[str | None]) -> dict[str, Any]:
    """The other ends of the mail path: the outside mail server writing to the company
    (not the ISP's backup MX or smarthost), and a workstation on each side."""
    nodes = topo.nodes
    sender = named.sender or _one([n for n in outside if "smtp" in nodes[n].services
                                   and n not in isp])
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
