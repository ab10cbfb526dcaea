"""The fixed cause list: one menu for every exercise.

A trainee submits a diagnosis as a cause id from this list plus a node name. The list is
the same whatever scenario runs, so reading it (``lab causes``) reveals nothing about the
injected faults. Causes are ordered by the layer the method checks first: DNS, then the
network, then the firewall, then the servers.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from lab.errors import LabError

Layer = Literal["dns", "network", "firewall", "server"]
LAYERS: tuple[Layer, ...] = ("dns", "network", "firewall", "server")


@dataclass(frozen=True)
class Cause:
    """One entry of the menu: a stable id, a short label, a one-line description, a layer."""

    id: str
    label: str
    description: str
    layer: Layer


CAUSES: tuple[Cause, ...] = (
    Cause("dns-wrong-address", "wrong public address",
          "the public A record of the mail host points at a wrong address", "dns"),
    Cause("dns-mx-missing", "MX record missing",
          "the domain publishes no MX record", "dns"),
    Cause("dns-mx-no-address", "MX host has no address",
          "the MX record names a host that has no A record", "dns"),
    Cause("dns-server-down", "authoritative DNS not answering",
          "the domain's authoritative name server does not answer queries", "dns"),
    Cause("dns-lame-delegation", "lame delegation",
          "the parent zone delegates the domain to a server that is not authoritative for it",
          "dns"),
    Cause("dns-stale-cache", "stale cached record",
          "a resolver keeps serving an outdated record from its cache", "dns"),
    Cause("dns-no-split-view", "no split DNS",
          "a host resolves the mail server to its public instead of its private address", "dns"),
    Cause("host-resolver-wrong", "resolver wrong or unreachable",
          "a host's configured name server is wrong or cannot be reached", "dns"),
    Cause("host-gateway-wrong", "default gateway wrong",
          "a host's default gateway is wrong, so it cannot reach other segments", "network"),
    Cause("link-down", "link down",
          "a link between a node and its segment is down", "network"),
    Cause("link-packet-loss", "packet loss",
          "a link drops a large share of its packets", "network"),
    Cause("nat-static-missing", "static NAT missing",
          "the firewall has no static NAT for the mail server's public address", "firewall"),
    Cause("nat-static-wrong-host", "static NAT to wrong host",
          "the static NAT maps the public address to a wrong private address", "firewall"),
    Cause("nat-dynamic-missing", "dynamic NAT missing",
          "internal hosts are not translated (many-to-one) when they go out", "firewall"),
    Cause("fw-smtp-permit-missing", "SMTP permit rule missing",
          "no firewall rule permits inbound SMTP to the mail server", "firewall"),
    Cause("fw-alert-permit-missing", "alert permit rule missing",
          "no rule permits the firewall itself to reach the mail server", "firewall"),
    Cause("fw-icmp-blocked", "ICMP not permitted",
          "the firewall does not permit ICMP echo to the mail server", "firewall"),
    Cause("proxy-server-not-listed", "mail server not in proxy list",
          "the proxy runs \"Inbound To\" without the mail server in its servers list", "firewall"),
    Cause("proxy-mode-mismatch", "proxy mode mismatch",
          "the SMTP proxy's mode does not match the address DNS points at", "firewall"),
    Cause("proxy-outbound-sender-refused", "outbound proxy refuses senders",
          "the SMTP proxy relaying outbound mail does not accept the company's senders",
          "firewall"),
    Cause("smtp-service-down", "SMTP service down",
          "the mail server's SMTP service is not running", "server"),
    Cause("smtp-relay-refused", "relay refused for LAN",
          "the mail server refuses to relay mail for its own LAN", "server"),
    Cause("smtp-tls-not-offered", "STARTTLS not offered",
          "the mail server no longer offers STARTTLS to senders that require it", "server"),
    Cause("tls-cert-expired", "certificate expired",
          "the mail server presents an expired TLS certificate", "server"),
    Cause("tls-cert-wrong-name", "certificate for wrong name",
          "the mail server's TLS certificate does not name the mail host", "server"),
)

CAUSE_IDS: frozenset[str] = frozenset(c.id for c in CAUSES)
_BY_ID = {c.id: c for c in CAUSES}


def get_cause(cause_id: str) -> Cause:
    """The cause with this id; a LabError naming the menu if there is none."""
    try:
        return _BY_ID[cause_id]
    except KeyError:
        raise LabError(f"unknown cause '{cause_id}'",
                       hint="`lab causes` lists the cause ids") from None


def render_causes() -> str:
    """The menu as ``lab causes`` prints it, grouped by layer in the method's order."""
    width = max(len(c.id) for c in CAUSES)
    out: list[str] = []
    for layer in LAYERS:
        out.append(f"{layer}:")
        out += [f"  {c.id:<{width}}  {c.description}" for c in CAUSES if c.layer == layer]
    return "\n".join(out) + "\n"
