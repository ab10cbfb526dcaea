"""Drawing a scenario's faults and their specifics from a seed (lab/faults/draw.py).

Root-free: drawing needs the scenario and the topology's roles, not a lab.
"""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from lab.errors import LabError
from lab.faults import CATALOG
from lab.faults.draw import answer_key, draw_faults, possible_answer_keys
from lab.model.roles import derive_roles
from lab.model.scenario import FaultRef, Scenario, load_scenarios
from lab.model.topology import load_topology
from lab.scoring.causes import CAUSE_IDS

ROOT = Path(__file__).resolve().parents[1]
SCENARIOS = load_scenarios(ROOT / "scenarios", set(CATALOG), CAUSE_IDS)
SEEDS = range(30)
# scenarios whose ticket tells of one cause on one node: one answer key is all they can give
SINGLE_LESSON = {
    "lame-delegation": "the DNS admin vouches for the zone: only the delegation is left",
    "mail-server-down": "'connection refused' both ways: only the SMTP service",
    "proxy-servers-list": "the proxy answers with temporary failures: only its servers list",
    "relay-refused": "'Relay access denied': only the relay networks",
    "stale-dns": "some senders still get the old address: only a resolver's cache",
    "outbound-proxy": "bounces began when the proxy took outbound mail: only its senders",
    "tls-required": "the partner requires encryption: only the STARTTLS offer",
    "isp-relay-bounce": "'Relay access denied' from our own MX: only what the relay relays",
}


def roles_of(scenario: Scenario):
    path = ROOT / "topologies" / f"{scenario.topology}.yaml"
    return derive_roles(load_topology(path, scenario.variant, scenario.overrides or None))


def scenario(**fields) -> Scenario:
    data = {"name": "t", "title": "t", "topology": "mail-dmz", "ticket": "t", "time_limit": 5,
            **fields}
    return Scenario.model_validate(data)


ROLES = roles_of(scenario(faults=[{"fault": "link-down"}]))


@pytest.mark.parametrize("seed", [0, 1, 7, 42, 2**31])
def test_the_same_seed_gives_the_same_faults_and_params(seed: int) -> None:
    sc = SCENARIOS["double-inbound"]
    first, herrings = draw_faults(sc, seed, ROLES)
    again, _ = draw_faults(sc, seed, ROLES)
    assert [(d.fault.name, d.params) for d in first] == [(d.fault.name, d.params) for d in again]
    assert len(first) == 2 and herrings == []
    for d in first:  # every param is set: nothing is left to chance at apply time
        assert None not in d.params.model_dump().values(), d


def test_explicit_params_win_over_drawn_ones() -> None:
    sc = scenario(faults=[{"fault": "link-packet-loss",
                           "params": {"node": "fw", "interface": "eth1", "percent": 35}}])
    for seed in SEEDS:
        (d,), _ = draw_faults(sc, seed, ROLES)
        assert (d.params.node, d.params.interface, d.params.percent) == ("fw", "eth1", 35)


def test_params_not_given_are_drawn_and_vary() -> None:
    sc = scenario(faults=[{"fault": "link-packet-loss", "params": {"node": "mx"}}])
    drawn = [draw_faults(sc, seed, ROLES)[0][0].params for seed in SEEDS]
    assert {p.node for p in drawn} == {"mx"}
    assert {p.interface for p in drawn} == {"eth0"}
    assert len({p.percent for p in drawn}) > 1


def test_red_herrings_are_drawn_too() -> None:
    sc = SCENARIOS["ping-red-herring"]
    _, herrings = draw_faults(sc, 3, ROLES)
    assert [h.fault.name for h in herrings] == ["fw-icmp-blocked"]


@pytest.mark.parametrize("pick", [1, 2, 3])
def test_a_pool_gives_distinct_faults(pick: int) -> None:
    sc = scenario(faults=[{"pick": pick, "from": [{"fault": "dns-mx-missing"},
                                                  {"fault": "nat-static-missing"},
                                                  {"fault": "smtp-service-down"}]}])
    for seed in SEEDS:
        names = [d.fault.name for d in draw_faults(sc, seed, ROLES)[0]]
        assert len(names) == pick == len(set(names))


def test_forced_faults_replace_the_draw_and_draw_their_own_params() -> None:
    sc = SCENARIOS["inbound-bounces"]
    drawn, _ = draw_faults(sc, 5, ROLES, [FaultRef(fault="link-down")])
    assert [d.fault.name for d in drawn] == ["link-down"]
    assert drawn[0].params.node in {"mx", "fw"}


def test_unknown_params_are_refused() -> None:
    sc = scenario(faults=[{"fault": "link-down", "params": {"segment": "lan"}}])
    with pytest.raises(ValueError):
        draw_faults(sc, 0, ROLES)


def test_a_node_the_topology_lacks_a_role_for_is_a_clear_error() -> None:
    topo = yaml.safe_load((ROOT / "topologies" / "mail-dmz.yaml").read_text())
    for node in topo["nodes"].values():
        node.get("services", {}).pop("firewall", None)
    from lab.model.topology import Topology

    bare = derive_roles(Topology.model_validate(topo))
    sc = scenario(faults=[{"fault": "nat-static-wrong-host"}])
    with pytest.raises(LabError, match="no inbound subnet") as err:
        draw_faults(sc, 0, bare)
    assert "firewall side" in err.value.hint


# --- variety: what a class sees across seeds ------------------------------------------------


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_seeds_reach_every_answer_key_the_pools_can_give(name: str) -> None:
    """Over 30 seeds a scenario gives every answer key (cause, node and the params that
    change what the trainee must find) its pools and faults can give; consecutive seeds
    give different ones until all were given."""
    sc = SCENARIOS[name]
    roles = roles_of(sc)
    possible = possible_answer_keys(sc, roles)
    seen = [answer_key(draw_faults(sc, seed, roles)[0], roles) for seed in SEEDS]
    assert len(possible) <= len(SEEDS), "too many combinations to check in 30 seeds"
    assert set(seen) == possible, f"{name}: {len(set(seen))} of {len(possible)} keys"
    first = seen[:len(possible)]
    assert len(set(first)) == len(first), "consecutive seeds repeat an answer key"


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_a_scenario_gives_several_answer_keys_unless_its_ticket_names_one(name: str) -> None:
    sc = SCENARIOS[name]
    count = len(possible_answer_keys(sc, roles_of(sc)))
    if name in SINGLE_LESSON:
        assert count == 1, f"{name} gives {count} keys now: drop it from SINGLE_LESSON"
    else:
        assert count >= 2, f"{name} always asks for the same answer"


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_several_faults_are_all_drawn_from_pools(name: str) -> None:
    sc = SCENARIOS[name]
    if len(sc.faults) > 1:
        for item in sc.faults:
            assert item.is_pool and len(item.from_) > item.pick, \
                f"{name}: a fixed fault in a multi-fault scenario gives every seed the same"


def test_scenario_problems_name_the_fault_and_what_is_wrong() -> None:
    from lab.faults.draw import scenario_problems

    assert all(scenario_problems(sc, roles_of(sc)) == [] for sc in SCENARIOS.values())
    sc = scenario(faults=[{"fault": "link-down", "params": {"node": "mx", "interface": "eth9"}},
                          {"pick": 1, "from": [{"fault": "dns-mx-missing", "params": {"x": 1}},
                                               {"fault": "dns-wrong-address",
                                                "params": {"address": "mail"}}]}],
                  red_herrings=[{"fault": "host-gateway-wrong", "params": {"node": "fw"}}])
    assert [(loc, msg) for loc, msg in scenario_problems(sc, ROLES)] == [
        (("faults", 0, "fault"), "node mx has no interface eth9"),
        (("faults", 1, "from", 0, "params", "x"), "Extra inputs are not permitted"),
        (("faults", 1, "from", 1, "params", "address"),
         "Value error, Expected 4 octets in 'mail'"),
        (("red_herrings", 0, "fault"), "node fw has no default gateway in topology mail-dmz"),
    ]
    bare = derive_roles(load_topology(ROOT / "topologies" / "mail-dmz.yaml").model_copy(
        update={"nodes": {}}))
    [(loc, msg)] = scenario_problems(scenario(faults=[{"fault": "dns-mx-missing"}]), bare)
    assert loc == ("faults", 0, "fault") and "has no" in msg
