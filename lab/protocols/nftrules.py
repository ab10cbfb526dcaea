"""Render a FirewallConfig to one nftables ruleset text (pure, deterministic).

The text deletes and recreates two tables in one ``nft -f`` transaction:

- ``table ip netguard_nat``: static NAT (DNAT public->private in prerouting, SNAT
  private->public in postrouting), dynamic NAT (masquerade the internal networks out of
  the external interface), and the ``inbound-through`` proxy redirect;
- ``table inet netguard``: input / forward / output filtering. Forwarded traffic is
  denied by default; every new connection is logged to NFLOG group ``log_group`` with a
  prefix ``P <rule>`` (permitted by that rule) or ``D`` (denied). The prefixes and the
  ruleset hold nothing but the policy's own rule names and verdicts.

Packet marks: a DNAT by static-NAT entry i sets ``mark STATIC_MARK_BASE + i + 1`` on the
first packet so the log reader can show the original (public) destination; the proxy
marks its own relay connections ``PROXY_MARK`` so the output chain lets them through.
"""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from lab.model.firewall import FirewallConfig, Rule

FILTER_TABLE = "netguard"
NAT_TABLE = "netguard_nat"
STATIC_MARK_BASE = 0x4E470000
PROXY_MARK = 0x4E47FFFF


@dataclass(frozen=True)
class FirewallAddresses:
    """The firewall's interface addresses in CIDR form, e.g. ``203.0.113.1/24``.

    ``external[0]`` is the firewall's own external address (where an ``inbound-to``
    proxy listens); static-NAT alias addresses need not be listed. ``internal`` gives the
    networks behind the firewall (the LAN, and a DMZ) that dynamic NAT masquerades.
    """

    external: list[str] = field(default_factory=list)
    internal: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        for a in (*self.external, *self.internal):
            ipaddress.IPv4Interface(a)  # raises ValueError on a bad address

    @property
    def external_address(self) -> str | None:
        return str(ipaddress.IPv4Interface(self.external[0]).ip) if self.external else None

    @property
    def internal_networks(self) -> list[str]:
        nets = {str(ipaddress.IPv4Interface(a).network) for a in self.internal}
        return sorted(nets, key=lambda n: ipaddress.IPv4Network(n))


def _q(name: str) -> str:
    return '"' + name + '"'


def _log(group: int, prefix: str) -> str:
    return f"log prefix {_q(prefix)} group {group}"


def _proto_match(rule: Rule) -> list[str]:
    if rule.proto in ("tcp", "udp"):
        if rule.port is not None:
            return [f"{rule.proto} dport {rule.port}"]
        return [f"meta l4proto {rule.proto}"]
    if rule.proto == "icmp":
        return ["meta l4proto icmp"]
    return ["meta nfproto ipv4"]


def _rule_line(config: FirewallConfig, rule: Rule, chain: str) -> str:
    parts: list[str] = []
    if rule.from_ not in ("any", "fw"):
        parts.append(f"ip saddr {rule.from_}")
    if rule.to not in ("any", "fw"):
        if config.private_for(rule.to) is not None:
            # addressed to a static-NAT public address: the forward chain sees the
            # private address, so match the connection's original destination
            parts.append(f"ct original ip daddr {rule.to}")
        else:
            parts.append(f"ip daddr {rule.to}")
    parts += _proto_match(rule)
    parts += ["ct state new", _log(config.log_group, f"P {rule.name}"), "accept"]
    return " ".join(parts)


def _chains_for(rule: Rule) -> list[str]:
    if rule.from_ == "fw":
        return ["output"]
    if rule.to == "fw":
        return ["input"]
    if rule.from_ == "any":
        return ["forward", "output"]  # "any" includes the firewall itself
    return ["forward"]


def render_ruleset(
    config: FirewallConfig,
    external_if: str,
    internal_if: str,
    fw_addresses: FirewallAddresses,
    dmz_if: str | None = None,
) -> str:
    """The complete ruleset text for ``nft -f``. With ``dmz_if`` (a three-legged
    firewall) the firewall's own traffic into the DMZ is filtered like its traffic into
    the LAN; forwarding between any two sides passes only by a permit rule."""
    for ifname in (external_if, internal_if, *([dmz_if] if dmz_if is not None else [])):
        if not ifname or len(ifname) > 15 or any(c in ifname for c in ' "\\\n\t'):
            raise ValueError(f"bad interface name {ifname!r}")
    group = config.log_group
    ext, inn = _q(external_if), _q(internal_if)
    proxy = config.proxy
    deny = f"meta nfproto ipv4 ct state new {_log(group, 'D')}"

    out: list[str] = [
        f"table ip {NAT_TABLE}",
        f"delete table ip {NAT_TABLE}",
        f"table inet {FILTER_TABLE}",
        f"delete table inet {FILTER_TABLE}",
        "",
        f"table ip {NAT_TABLE} {{",
        "\tchain prerouting {",
        "\t\ttype nat hook prerouting priority dstnat; policy accept;",
    ]
    if proxy.mode == "inbound-through":
        out.append(f"\t\tiifname {ext} tcp dport 25 redirect to :{proxy.port}")
    if proxy.outbound and fw_addresses.internal_networks:
        inside = ", ".join(fw_addresses.internal_networks)
        out.append(f"\t\tiifname {inn} ip daddr != {{ {inside} }} tcp dport 25 "
                   f"redirect to :{proxy.outbound_port}")
    for i, entry in enumerate(config.static_nat):
        mark = STATIC_MARK_BASE + i + 1
        out.append(
            f"\t\tiifname {ext} ip daddr {entry.public} meta mark set 0x{mark:08x} "
            f"dnat to {entry.private}"
        )
    out += [
        "\t}",
        "",
        "\tchain postrouting {",
        "\t\ttype nat hook postrouting priority srcnat; policy accept;",
    ]
    for entry in config.static_nat:
        out.append(f"\t\toifname {ext} ip saddr {entry.private} snat to {entry.public}")
    if config.dynamic_nat:
        for net in fw_addresses.internal_networks:
            out.append(f"\t\toifname {ext} ip saddr {net} masquerade")
    out += ["\t}", "}", ""]

    chains: dict[str, list[str]] = {"input": [], "forward": [], "output": []}
    for rule in config.rules:
        for chain in _chains_for(rule):
            chains[chain].append(_rule_line(config, rule, chain))

    out += [
        f"table inet {FILTER_TABLE} {{",
        "\tchain input {",
        "\t\ttype filter hook input priority filter; policy drop;",
        "\t\tct state established,related accept",
        "\t\tct state invalid drop",
        '\t\tiifname "lo" accept',
        "\t\ticmp type echo-request accept",
    ]
    if proxy.mode == "inbound-through":
        out.append(f"\t\ttcp dport {proxy.port} ct status dnat accept")
    if proxy.outbound:
        out.append(f"\t\tiifname {inn} tcp dport {proxy.outbound_port} ct status dnat accept")
    if proxy.mode == "inbound-to" and fw_addresses.external_address:
        out.append(
            f"\t\tiifname {ext} ip daddr {fw_addresses.external_address} tcp dport 25 accept"
        )
    out += [f"\t\t{line}" for line in chains["input"]]
    out += [
        f"\t\t{deny}",
        "\t}",
        "",
        "\tchain forward {",
        "\t\ttype filter hook forward priority filter; policy drop;",
        "\t\tct state established,related accept",
        "\t\tct state invalid drop",
    ]
    out += [f"\t\t{line}" for line in chains["forward"]]
    out += [
        f"\t\t{deny}",
        "\t}",
        "",
        "\tchain output {",
        "\t\ttype filter hook output priority filter; policy accept;",
        "\t\tct state established,related accept",
        '\t\toifname "lo" accept',
    ]
    if proxy.mode != "none" or proxy.outbound:
        out.append(f"\t\tmeta mark 0x{PROXY_MARK:08x} accept")
    for side in [inn] + ([_q(dmz_if)] if dmz_if is not None else []):
        out += [f"\t\toifname {side} {line}" for line in chains["output"]]
        out += [f"\t\toifname {side} {deny}", f"\t\toifname {side} meta nfproto ipv4 drop"]
    out += ["\t}", "}"]
    return "\n".join(out) + "\n"
