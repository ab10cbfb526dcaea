"""Damage (lab/scoring/damage.py) on real `nft list ruleset` texts: the trainee's changes
from the lab as the faults left it, judged against the healthy policy too.

tests/golden/attempt/healthy-ruleset.nft is fw's ruleset as `nft list ruleset` printed it
in a running mail-dmz lab (captured from `lab exec fw -- nft list ruleset`). The faulted
and the trainee's rulesets are derived from it by editing the text the way a fault or a
trainee's command changes it (a rule removed, flush, policy accept, an added rule, NAT
moved). Root-free: no lab is started (tests/test_scoring_lab.py does that).
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from lab.scoring.damage import Damage, LabState, find_damage, ruleset_damage, service_damage
from lab.scoring.ruleset import describe, parse

HEALTHY = (Path(__file__).parent / "golden" / "attempt" / "healthy-ruleset.nft").read_text()
FW = "fw"  # the reference firewall node, as the golden ruleset is its

SMTP_IN_FWD = ('\t\tct original ip daddr 203.0.113.25 tcp dport 25 ct state new '
               'log prefix "P smtp-in" group 1 accept\n')
SMTP_OUT_FWD = ('\t\tip saddr 10.1.0.25 tcp dport 25 ct state new log prefix "P smtp-out" '
                'group 1 accept\n')
ICMP_FWD = '\t\tmeta l4proto icmp ct state new log prefix "P icmp" group 1 accept\n'
INVALID_FWD = "\t\tct state invalid drop\n\t\tct original ip daddr 203.0.113.25 tcp"
MASQ = '\t\toifname "eth0" ip saddr 10.1.0.0/24 masquerade\n'
DNAT = ('\t\tiifname "eth0" ip daddr 203.0.113.25 meta mark set 0x4e470001 '
        'dnat to 10.1.0.25\n')
FWD_D_LOG = '\t\tmeta nfproto ipv4 ct state new log prefix "D" group 1\n\t}\n\n\tchain output'
# what proxy-mode-mismatch (static-nat) does: "Inbound To" on, the smtp-in permit gone
PROXY_INPUT = ('\t\ticmp type echo-request accept\n'
               '\t\tiifname "eth0" ip daddr 203.0.113.1 tcp dport 25 accept\n')
PROXY_OUTPUT = '\t\toifname "lo" accept\n\t\tmeta mark 0x4e47ffff accept\n'


def test_golden_is_a_real_ruleset():
    """The golden text is the healthy policy: drop policies, static and dynamic NAT, the
    SMTP permit rule; the edits below rely on these exact lines."""
    assert "table inet netguard {" in HEALTHY and "table ip netguard_nat {" in HEALTHY
    assert HEALTHY.count("policy drop;") == 2
    for line in (SMTP_IN_FWD, SMTP_OUT_FWD, ICMP_FWD, INVALID_FWD, MASQ, DNAT, FWD_D_LOG):
        assert HEALTHY.count(line) == 1, line


def without(text: str, line: str) -> str:
    assert line in text
    return text.replace(line, "", 1)


def forward_policy_accept(text: str) -> str:
    head, sep, tail = text.partition("chain forward {")
    return head + sep + tail.replace("policy drop;", "policy accept;", 1)


def append_to_forward(text: str, rule: str) -> str:
    """What `nft add rule inet netguard forward RULE` does: the rule goes last."""
    return text.replace(FWD_D_LOG, FWD_D_LOG.replace(
        "group 1\n\t}", f"group 1\n\t\t{rule}\n\t}}"), 1)


def only_nat_table(text: str) -> str:
    """`nft delete table inet netguard`: the filter table gone, NAT left."""
    return text[:text.index("table inet netguard {")]


def with_counters(text: str) -> str:
    """The same policy with counters on every rule (as `nft list ruleset` shows them)."""
    return re.sub(r" (accept|drop|masquerade|dnat to [0-9.]+|snat to [0-9.]+)\n",
                  r" counter packets 12 bytes 3456 \1\n", text)


def proxy_mismatch(text: str) -> str:
    """The faulted ruleset of proxy-mode-mismatch: proxy rules added, smtp-in removed."""
    text = without(text, SMTP_IN_FWD)
    text = text.replace("\t\ticmp type echo-request accept\n", PROXY_INPUT, 1)
    return text.replace('\t\toifname "lo" accept\n', PROXY_OUTPUT, 1)


def own_table(rule: str) -> str:
    return ("table ip trainee {\n\tchain pre {\n\t\ttype nat hook prerouting priority -101; "
            f"policy accept;\n\t\t{rule}\n\t}}\n\tchain fwd {{\n\t\ttype filter hook forward "
            "priority 0; policy accept;\n\t\taccept\n\t}\n}\n")


def whats(found: list[Damage]) -> list[str]:
    return [d.what for d in found]


FLUSHED = ("the firewall's whole ruleset was flushed: it filters nothing and translates "
           "nothing")
FILTER_GONE = ("the firewall's filter table was deleted: it accepts and forwards every "
               "connection")
POLICY = "the default policy for traffic through the firewall was changed from drop to accept"
ACCEPT_ALL = "a rule now accepts everything"
MASQ_GONE = "dynamic NAT was disabled: internal hosts can no longer reach the internet"
DNAT_GONE = "static NAT was removed: 203.0.113.25 no longer leads to 10.1.0.25"


def wider(what: str) -> str:
    return f"a permit wider than the healthy policy: {what}"


CASES = [
    # (id, faulted, trainee's, expected)
    ("nothing-changed", HEALTHY, HEALTHY, []),
    ("counters-only", HEALTHY, with_counters(HEALTHY), []),
    # the fault's own changes are not the trainee's
    ("proxy-mismatch-untouched", proxy_mismatch(HEALTHY), proxy_mismatch(HEALTHY), []),
    ("smtp-permit-fault-untouched", without(HEALTHY, SMTP_IN_FWD), without(HEALTHY, SMTP_IN_FWD),
     []),
    ("static-nat-fault-untouched", without(HEALTHY, DNAT), without(HEALTHY, DNAT), []),
    ("dynamic-nat-fault-untouched", without(HEALTHY, MASQ), without(HEALTHY, MASQ), []),
    # undoing a fault is a repair
    ("proxy-mismatch-undone", proxy_mismatch(HEALTHY), HEALTHY, []),
    ("smtp-permit-restored", without(HEALTHY, SMTP_IN_FWD), HEALTHY, []),
    ("smtp-permit-restored-without-logging", without(HEALTHY, SMTP_IN_FWD),
     append_to_forward(without(HEALTHY, SMTP_IN_FWD),
                       "ct original ip daddr 203.0.113.25 tcp dport 25 accept"), []),
    ("narrower-permit", without(HEALTHY, SMTP_IN_FWD),
     append_to_forward(without(HEALTHY, SMTP_IN_FWD), 'iifname "eth0" ct original ip daddr '
                       "203.0.113.25 tcp dport 25 ip saddr 203.0.113.20 accept"), []),
    ("static-nat-restored", without(HEALTHY, DNAT), HEALTHY, []),
    ("static-nat-restored-by-hand", without(HEALTHY, DNAT), HEALTHY.replace(
        DNAT, "\t\tip daddr 203.0.113.25 dnat to 10.1.0.25\n"), []),
    ("dynamic-nat-restored", without(HEALTHY, MASQ), HEALTHY, []),
    ("block-rule-added", HEALTHY, append_to_forward(HEALTHY, "ip saddr 203.0.113.66 drop"), []),
    # wider than healthy
    ("flushed", without(HEALTHY, SMTP_IN_FWD), "", [FLUSHED]),
    ("flushed-despite-nat-fault", without(HEALTHY, MASQ), "", [FLUSHED]),
    ("filter-table-deleted", HEALTHY, only_nat_table(HEALTHY), [FILTER_GONE]),
    ("forward-policy-accept", without(HEALTHY, SMTP_IN_FWD),
     forward_policy_accept(without(HEALTHY, SMTP_IN_FWD)), [POLICY]),
    ("accept-all", without(HEALTHY, SMTP_IN_FWD),
     append_to_forward(without(HEALTHY, SMTP_IN_FWD), "accept"), [ACCEPT_ALL]),
    ("accept-all-in-proxy-mismatch", proxy_mismatch(HEALTHY),
     append_to_forward(proxy_mismatch(HEALTHY), "accept"), [ACCEPT_ALL]),
    ("wider-permit-any-to-mx", without(HEALTHY, SMTP_IN_FWD),
     append_to_forward(without(HEALTHY, SMTP_IN_FWD), "ip daddr 10.1.0.25 accept"),
     [wider("all traffic to 10.1.0.25, from anywhere through the firewall")]),
    ("wider-permit-negated", without(HEALTHY, SMTP_IN_FWD),
     append_to_forward(without(HEALTHY, SMTP_IN_FWD),
                       "ct original ip daddr 203.0.113.25 tcp dport 25 ip saddr != 10.9.9.9 "
                       "accept"),
     [wider("TCP port 25 to 203.0.113.25 from anything but 10.9.9.9 through the firewall")]),
    ("nat-to-the-wrong-place", without(HEALTHY, DNAT),
     HEALTHY.replace("dnat to 10.1.0.25", "dnat to 10.1.0.99"),
     ["NAT to the wrong place: 203.0.113.25 now leads to 10.1.0.99 (healthy: 10.1.0.25)"]),
    ("masquerade-removed", without(HEALTHY, SMTP_IN_FWD),
     without(without(HEALTHY, SMTP_IN_FWD), MASQ), [MASQ_GONE]),
    ("static-nat-removed", HEALTHY, without(HEALTHY, DNAT), [DNAT_GONE]),
    ("healthy-permit-removed", without(HEALTHY, SMTP_IN_FWD),
     without(without(HEALTHY, SMTP_IN_FWD), SMTP_OUT_FWD),
     [("a permit of the healthy policy was removed: TCP port 25 from 10.1.0.25 through the "
       "firewall")]),
    ("block-rule-removed", HEALTHY, HEALTHY.replace(INVALID_FWD, INVALID_FWD.replace(
        "\t\tct state invalid drop\n", "", 1)),
     [("a block rule of the healthy policy was removed (it refused all traffic, from "
       "anywhere through the firewall)")]),
    ("policy-and-masquerade", HEALTHY, forward_policy_accept(without(HEALTHY, MASQ)),
     [MASQ_GONE, POLICY]),
    # a table of the trainee's own: its accepts cannot override fw's drops, its NAT can
    ("own-table-accept", HEALTHY, HEALTHY + own_table("ip daddr 203.0.113.99 counter"), []),
    ("own-table-dnat", HEALTHY, HEALTHY + own_table("ip daddr 203.0.113.99 dnat to 10.1.0.53"),
     ["a static NAT the healthy policy does not have: 203.0.113.99 now leads to 10.1.0.53"]),
]


@pytest.mark.parametrize("faulted,current,expected",
                         [pytest.param(f, c, e, id=i) for i, f, c, e in CASES])
def test_ruleset_damage(faulted: str, current: str, expected: list[str]) -> None:
    assert sorted(whats(ruleset_damage(HEALTHY, faulted, current, FW))) == sorted(expected)


def test_damage_is_found_in_any_order_of_tables():
    """nft prints tables in creation order; a trainee who rebuilt the NAT table after the
    filter table changes the order, not the policy."""
    nat_end = HEALTHY.index("table inet netguard {")
    reordered = HEALTHY[nat_end:] + "\n" + HEALTHY[:nat_end]
    assert ruleset_damage(HEALTHY, HEALTHY, reordered, FW) == []
    assert whats(ruleset_damage(HEALTHY, HEALTHY, forward_policy_accept(reordered), FW)) == [POLICY]


def test_a_damage_line_names_where_and_folds_the_rule():
    faulted = without(HEALTHY, SMTP_IN_FWD)
    [d] = ruleset_damage(HEALTHY, faulted, append_to_forward(faulted, "counter accept"), FW)
    assert d == Damage(ACCEPT_ALL, "firewall", "fw: table inet netguard, chain forward",
                       ["accept"])


@pytest.mark.parametrize(("faulted", "now", "expected"), [
    ({"mx/smtp": True, "ns-ext/dns": True}, {"mx/smtp": True, "ns-ext/dns": True}, []),
    # stopped by the fault, still stopped or restarted: not the trainee's doing
    ({"mx/smtp": False}, {"mx/smtp": False}, []),
    ({"mx/smtp": False}, {"mx/smtp": True}, []),
    ({"mx/smtp": True, "ns-int/dns": True}, {"mx/smtp": True, "ns-int/dns": False},
     ["the dns service on ns-int was stopped"]),
])
def test_service_damage(faulted: dict, now: dict, expected: list[str]) -> None:
    assert whats(service_damage(faulted, now)) == expected


def test_find_damage_joins_ruleset_and_services():
    healthy = LabState(HEALTHY, {"mx/smtp": True})
    faulted = LabState(without(HEALTHY, SMTP_IN_FWD), {"mx/smtp": True})
    now = LabState("", {"mx/smtp": False})
    assert [d.kind for d in find_damage(healthy, faulted, now, FW)] == ["firewall", "service"]


@pytest.mark.parametrize(("rule", "hook", "words"), [
    ("accept", "forward", "all traffic, from anywhere through the firewall"),
    ("ip saddr 10.1.0.53 udp dport 53 accept", "forward",
     "UDP port 53 from 10.1.0.53 through the firewall"),
    ('oifname "eth1" ip daddr 10.1.0.25 tcp dport 25 accept', "output",
     "TCP port 25 to 10.1.0.25, from anywhere (out of eth1) from the firewall"),
    ("meta l4proto icmp accept", "forward", "ICMP, from anywhere through the firewall"),
])
def test_describe(rule: str, hook: str, words: str) -> None:
    assert describe(rule, hook) == words


def test_parse_reads_hooks_policies_and_rules():
    tables = parse(with_counters(HEALTHY))
    fwd = tables["inet netguard"]["forward"]
    assert (fwd.hook, fwd.policy) == ("forward", "drop")
    assert fwd.rules[2] == "ct original ip daddr 203.0.113.25 tcp dport 25 ct state new accept"
    assert tables["ip netguard_nat"]["postrouting"].rules[1] == \
        'oifname "eth0" ip saddr 10.1.0.0/24 masquerade'
