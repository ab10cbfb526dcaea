"""Collateral damage (lab/scoring/damage.find_damage) on real `nft list ruleset` texts.

tests/golden/attempt/healthy-ruleset.nft is fw's ruleset as `nft list ruleset` printed it
in a running mail-dmz lab (captured once from `lab exec fw -- nft list ruleset`). Every
other ruleset here is derived from it by editing the text the way a trainee's command
would change it (flush, policy accept, an added accept rule, NAT removed, a rule removed
by a fault). Root-free: no lab is started.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from lab.scoring.damage import find_damage

HEALTHY = (Path(__file__).parent / "golden" / "attempt" / "healthy-ruleset.nft").read_text()

SMTP_IN_FWD = ('\t\tct original ip daddr 203.0.113.25 tcp dport 25 ct state new '
               'log prefix "P smtp-in" group 1 accept\n')
MASQ = '\t\toifname "eth0" ip saddr 10.1.0.0/24 masquerade\n'
DNAT = ('\t\tiifname "eth0" ip daddr 203.0.113.25 meta mark set 0x4e470001 '
        'dnat to 10.1.0.25\n')
FWD_D_LOG = '\t\tmeta nfproto ipv4 ct state new log prefix "D" group 1\n\t}\n\n\tchain output'


def test_golden_is_a_real_ruleset():
    """The golden text is the healthy policy: drop policies, static and dynamic NAT, the
    SMTP permit rule; the edits below rely on these exact lines."""
    assert "table inet netguard {" in HEALTHY and "table ip netguard_nat {" in HEALTHY
    assert HEALTHY.count("policy drop;") == 2
    for line in (SMTP_IN_FWD, MASQ, DNAT):
        assert HEALTHY.count(line) == 1, line
    assert HEALTHY.count(FWD_D_LOG) == 1


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


FLUSHED = "the firewall's filter table is gone (ruleset flushed)"
POLICY = "table inet netguard chain forward: default policy changed to accept"
MASQ_GONE = "dynamic NAT (masquerade) disabled"
DNAT_GONE = "static NAT removed"


def added(rule: str) -> str:
    return f"table inet netguard chain forward: rule added beyond the healthy policy: {rule}"


CASES = [
    # (id, current ruleset, causes of the attempt's faults, expected damage)
    ("healthy-unchanged", HEALTHY, set(), []),
    ("counters-only", with_counters(HEALTHY), set(), []),
    ("flushed", "", set(), [FLUSHED]),
    ("flushed-despite-nat-fault", "", {"nat-dynamic-missing"}, [FLUSHED]),
    ("filter-table-deleted", only_nat_table(HEALTHY), set(), [FLUSHED]),
    ("forward-policy-accept", forward_policy_accept(HEALTHY), set(), [POLICY]),
    ("add-rule-forward-accept", append_to_forward(HEALTHY, "accept"), set(),
     [added("accept")]),
    ("add-rule-any-to-mx", append_to_forward(HEALTHY, "ip daddr 10.1.0.25 accept"), set(),
     [added("ip daddr 10.1.0.25 accept")]),
    ("masquerade-removed", without(HEALTHY, MASQ), set(), [MASQ_GONE]),
    ("masquerade-removed-by-its-fault", without(HEALTHY, MASQ), {"nat-dynamic-missing"}, []),
    ("masquerade-removed-other-fault", without(HEALTHY, MASQ), {"fw-smtp-permit-missing"},
     [MASQ_GONE]),
    ("static-nat-removed", without(HEALTHY, DNAT), set(), [DNAT_GONE]),
    ("static-nat-removed-by-its-fault", without(HEALTHY, DNAT), {"nat-static-missing"}, []),
    ("static-nat-wrong-host-fault", HEALTHY.replace("dnat to 10.1.0.25", "dnat to 10.1.0.26"),
     {"nat-static-wrong-host"}, []),
    # a missing rule is not damage: a fault removed it, the probes judge the repair
    ("missing-smtp-permit", without(HEALTHY, SMTP_IN_FWD), {"fw-smtp-permit-missing"}, []),
    ("missing-smtp-permit-no-fault", without(HEALTHY, SMTP_IN_FWD), set(), []),
    # the exact healthy rule put back (by `nft insert rule ...`) is a repair, not damage
    ("smtp-permit-restored-exactly", HEALTHY, {"fw-smtp-permit-missing"}, []),
    ("policy-and-masquerade", forward_policy_accept(without(HEALTHY, MASQ)), set(),
     [POLICY, MASQ_GONE]),
]


@pytest.mark.parametrize("current,causes,expected",
                         [pytest.param(c, f, e, id=i) for i, c, f, e in CASES])
def test_find_damage(current, causes, expected):
    assert find_damage(HEALTHY, current, causes) == expected


def test_damage_is_found_in_any_order_of_tables():
    """nft prints tables in creation order; a trainee who rebuilt the NAT table after the
    filter table changes the order, not the policy."""
    nat_end = HEALTHY.index("table inet netguard {")
    reordered = HEALTHY[nat_end:] + "\n" + HEALTHY[:nat_end]
    assert find_damage(HEALTHY, reordered, set()) == []
    assert find_damage(HEALTHY, forward_policy_accept(reordered), set()) == [POLICY]


def test_equivalent_permit_without_logging_is_not_damage():
    repaired = append_to_forward(without(HEALTHY, SMTP_IN_FWD),
                                 "ct original ip daddr 203.0.113.25 tcp dport 25 ct state new "
                                 "accept")
    assert find_damage(HEALTHY, repaired, {"fw-smtp-permit-missing"}) == []
