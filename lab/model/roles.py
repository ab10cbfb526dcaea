"""What each node of a topology is for in the mail path: its roles.

Faults, probes, symptoms and the engine read names, addresses and domains from here, never
from a particular topology. ``derive_roles(topo)`` is pure: it derives every role it can
from the services (the firewall is the node with a ``firewall`` service, the mail server
the SMTP node behind it, the public DNS the outside server authoritative for the mail
domain, ...); a topology's optional ``roles:`` block names the nodes that cannot be
derived or are ambiguous, and wins over derivation.

A role that is neither derivable nor named is None; ``Roles.need(name)`` turns that into
a LabError saying how to name it. ``Roles.vars()`` gives every role as ``roles.NAME`` for
``${roles.NAME}`` templates (symptoms today; playbooks and tickets may use them later).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict

from lab.errors import LabError

if TYPE_CHECKING:
    from lab.model.topology import Topology

Loc = tuple[Any, ...]


class RoleNames(BaseModel):
    """The ``roles:`` block of a topology file: node names (and the mail domain) for the
    roles that cannot be derived from the services, or to settle an ambiguity."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    mail_domain: str | None = None
    mail_server: str | None = None
    firewall: str | None = None
    public_dns: str | None = None
    parent_dns: str | None = None
    root_dns: str | None = None
    internal_dns: str | None = None
    public_resolver: str | None = None
    sender: str | None = None
    outside_client: str | None = None
    internal_client: str | None = None
    inbound_relay: str | None = None
    backup_mx: str | None = None
    smarthost: str | None = None
    internal_forwarder: str | None = None


# what each named node must run, for the problems() check
_NEEDS: dict[str, str] = {"mail_server": "smtp", "firewall": "firewall", "public_dns": "dns",
                          "parent_dns": "dns", "root_dns": "dns", "internal_dns": "dns",
                          "public_resolver": "dns", "sender": "smtp", "inbound_relay": "smtp",
                          "backup_mx": "smtp", "smarthost": "smtp",
                          "internal_forwarder": "dns"}

# how each role is derived, for the hint when one is missing
DERIVATION: dict[str, str] = {
    "firewall": "the one node with a firewall service",
    "mail_server": "the one node with an smtp service on the firewall's internal segment",
    "mail_domain": "the first of the mail server's smtp domains",
    "public_dns": "the one outside node authoritative for the mail domain",
    "parent_dns": "the outside node serving the zone that delegates the mail domain",
    "root_dns": "the node serving the root zone",
    "internal_dns": "the one inside node serving the mail domain's zone (split view)",
    "public_resolver": "the one outside node with a dns service in mode recursive",
    "sender": "the one outside node with an smtp service",
    "outside_client": "the first outside node without services",
    "internal_client": "the first inside node without services",
    "inbound_relay": "the one node behind the firewall (DMZ or LAN), other than the mail "
                     "server, whose smtp relay_domains hold the mail domain",
    "inbound_server": "the inbound relay if there is one, else the mail server",
    "inbound_private": "the inbound server's address on the firewall's LAN or DMZ side",
    "inbound_public": "the firewall's static NAT for the inbound server's address",
    "inbound_subnet": "the network of the firewall side (LAN or DMZ) the inbound server is on",
    "backup_mx": "the one outside node whose smtp relay_domains hold the mail domain",
    "smarthost": "the node the mail server's smtp relayhost names (by host name or address)",
    "internal_forwarder": "the one inside node whose dns service has forwarders",
    "fw_dmz": "the firewall's dmz segment (services: firewall: dmz:)",
}


@dataclass(frozen=True)
class Roles:
    """Every role of a topology; a field is None (or empty) where the topology has none.

    Node roles name nodes; ``*_address`` fields are their addresses on the path; segment
    and interface fields name the firewall's sides.
    """

    topology: str
    # the firewall and its sides
    firewall: str | None = None
    fw_external: str | None = None  # segment
    fw_internal: str | None = None  # segment
    fw_external_if: str | None = None  # eth0, eth1, ...
    fw_internal_if: str | None = None
    fw_public: str | None = None  # the firewall's own address on the external side
    fw_private: str | None = None  # ... and on the internal side
    fw_external_subnet: str | None = None
    fw_internal_subnet: str | None = None
    fw_dmz: str | None = None  # the third side of a three-legged firewall (segment)
    fw_dmz_if: str | None = None
    fw_dmz_address: str | None = None  # the firewall's own address on it
    fw_dmz_subnet: str | None = None
    inside: tuple[str, ...] = ()  # nodes on the internal segment (firewall excluded)
    outside: tuple[str, ...] = ()  # nodes on the external segment (firewall excluded)
    dmz: tuple[str, ...] = ()  # nodes on the dmz segment (firewall excluded)
    # the organisation's mail
    mail_domain: str | None = None
    mail_server: str | None = None
    mail_host: str | None = None  # the name the public MX record points at
    mail_server_host: str | None = None  # the mail server's own name (banner, certificate)
    mail_server_if: str | None = None  # its interface on the internal segment
    mail_private: str | None = None
    mail_public: str | None = None  # the static-NAT address of mail_private
    mailboxes: tuple[str, ...] = ()
    mailbox: str | None = None  # for test mail: postmaster if listed (RFC 5321), else the first
    alert_recipient: str | None = None  # where the firewall's alert mails go
    alert_server: str | None = None  # the mail server name the alert mailer resolves
    # where mail from the internet enters: an inbound relay, or the mail server itself
    inbound_relay: str | None = None
    inbound_relay_address: str | None = None
    inbound_server: str | None = None
    inbound_private: str | None = None  # its address behind the firewall
    inbound_public: str | None = None  # the static-NAT address of inbound_private
    inbound_subnet: str | None = None  # the segment it sits on (the LAN, or the DMZ)
    # the ISP's mail servers
    backup_mx: str | None = None  # an outside MX that queues for the mail domain
    backup_mx_address: str | None = None
    backup_mx_host: str | None = None  # its host name
    smarthost: str | None = None  # the mail server's relayhost
    smarthost_address: str | None = None
    smarthost_host: str | None = None  # the host its relayhost names
    # DNS
    public_dns: str | None = None
    public_dns_address: str | None = None
    parent_zone: str | None = None
    parent_dns: str | None = None
    parent_dns_address: str | None = None
    root_dns: str | None = None
    root_dns_address: str | None = None
    internal_dns: str | None = None
    internal_dns_address: str | None = None
    public_resolver: str | None = None
    public_resolver_address: str | None = None
    public_resolvers: tuple[str, ...] = ()  # every outside recursive resolver
    internal_resolvers: tuple[str, ...] = ()  # inside nodes that recurse for clients
    internal_forwarder: str | None = None  # an inside DNS server that forwards
    internal_forwarder_address: str | None = None
    forwarders: tuple[str, ...] = ()  # the servers it forwards to
    # the other ends of the mail path
    sender: str | None = None  # the outside mail server that sends to mail_domain
    sender_address: str | None = None
    sender_domain: str | None = None
    sender_mailboxes: tuple[str, ...] = ()
    sender_mailbox: str | None = None
    outside_client: str | None = None
    outside_client_address: str | None = None
    internal_client: str | None = None
    internal_client_address: str | None = None
    used_addresses: tuple[str, ...] = ()  # every address of every node (aliases too)
    # the topology the roles come from, for what is not a role (a node's routes, rules)
    topo: Topology | None = field(default=None, repr=False, compare=False)

    def need(self, name: str) -> Any:
        """The role's value; a LabError naming the role and how to provide it if unset."""
        value = getattr(self, name)
        if value is None or value == ():
            base = name.removesuffix("_address")
            how = DERIVATION.get(base)
            hint = (f"a {base} is derived as {how}; or name it under `roles:` in the topology "
                    "file" if how else "see the roles of the topology's nodes")
            raise LabError(f"topology {self.topology} has no {name.replace('_', ' ')}",
                           hint=hint)
        return value

    def vars(self) -> dict[str, str]:
        """Every set role as ``roles.NAME`` -> text (lists joined by ", ")."""
        out = {}
        for key in ROLE_FIELDS:
            value = getattr(self, key)
            if value is None or value == () or key == "topo":
                continue
            out[f"roles.{key}"] = ", ".join(value) if isinstance(value, tuple) else str(value)
        return out


ROLE_FIELDS = tuple(f.name for f in fields(Roles) if f.name != "topo")
_PLACEHOLDER = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_.]*)\}")


def render(template: str, values: dict[str, str], topology: str = "") -> str:
    """``template`` with every ``${NAME}`` replaced from ``values``; a LabError names a
    placeholder without a value (a role the topology lacks, or a typo)."""

    def sub(m: re.Match) -> str:
        key = m.group(1)
        if key in values:
            return values[key]
        field = key.removeprefix("roles.")
        if key.startswith("roles.") and field in ROLE_FIELDS:
            raise LabError(f"topology {topology} has no {field.replace('_', ' ')}",
                           hint=f"{field} is derived as {DERIVATION.get(field, '...')}")
        raise LabError(f"unknown placeholder ${{{key}}}")

    return _PLACEHOLDER.sub(sub, template)


def placeholders(template: str) -> list[str]:
    return _PLACEHOLDER.findall(template)


def skeleton(template: str) -> str:
    """The template for reading without a topology: ``${roles.mail_host}`` as
    ``<mail_host>``."""
    return _PLACEHOLDER.sub(lambda m: f"<{m.group(1).split('.', 1)[-1]}>", template)


# --- derivation ----------------------------------------------------------------------------


def derive_roles(topo: Topology) -> Roles:
    """The roles of ``topo``: its ``roles:`` block first, derived from services otherwise
    (lab/model/roles_derive.py)."""
    from lab.model.roles_derive import derive

    return Roles(**derive(topo))


# --- the roles: block's own checks --------------------------------------------------------


def role_problems(topo: Topology) -> list[tuple[Loc, str]]:
    """Problems of the ``roles:`` block, each with its field (for file:line errors)."""
    from lab.model.roles_derive import dns_of, norm, smtp_of

    found: list[tuple[Loc, str]] = []
    named = topo.roles
    for role, node in named.model_dump(exclude_none=True).items():
        if role == "mail_domain":
            continue
        loc: Loc = ("roles", role)
        if node not in topo.nodes:
            found.append((loc, f"unknown node '{node}' (nodes: {', '.join(topo.nodes)})"))
            continue
        kind = _NEEDS.get(role)
        if kind and kind not in topo.nodes[node].services:
            found.append((loc, f"{role} '{node}' has no {kind} service"))
        elif role == "public_resolver" and dns_of(topo.nodes[node]).get("mode") != "recursive":
            found.append((loc, f"public_resolver '{node}' does not recurse (mode recursive)"))
    server = named.mail_server
    if named.mail_domain and server in topo.nodes and "smtp" in topo.nodes[server].services:
        domains = [norm(d) for d in smtp_of(topo.nodes[server]).get("domains") or []]
        if norm(named.mail_domain) not in domains:
            listed = ", ".join(map(str, domains))
            msg = f"'{named.mail_domain}' is not a domain of the mail server {server} ({listed})"
            found.append((("roles", "mail_domain"), msg))
    return found
