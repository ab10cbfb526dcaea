"""Topology variants and overrides are laid over the file before validation."""
from __future__ import annotations

from pathlib import Path

import pytest

from lab.errors import LabError
from lab.model.source import FileError, deep_merge
from lab.model.topology import load_topology

MAIL_DMZ = Path(__file__).resolve().parents[1] / "topologies" / "mail-dmz.yaml"


@pytest.mark.parametrize("variant, mode, a_record", [
    (None, "none", "mail A 203.0.113.25"),
    ("inbound-through", "inbound-through", "mail A 203.0.113.25"),
    ("inbound-to", "inbound-to", "mail A 203.0.113.1"),
])
def test_variant_sets_proxy_mode_and_public_record(variant, mode, a_record) -> None:
    topo = load_topology(MAIL_DMZ, variant)
    assert topo.nodes["fw"].services["firewall"]["proxy"]["mode"] == mode
    records = topo.nodes["ns-ext"].services["dns"]["zones"]["example.net"]["records"]
    assert a_record in records
    # the rest of the firewall policy is kept
    assert topo.nodes["fw"].services["firewall"]["static_nat"]


def test_unknown_variant_is_a_clear_error() -> None:
    with pytest.raises(LabError, match="no variant 'nope'") as err:
        load_topology(MAIL_DMZ, "nope")
    assert "inbound-to" in err.value.hint


def test_overrides_are_validated_with_the_file() -> None:
    bad = {"nodes": {"fw": {"services": {"firewall": {"proxy": {"mode": "sideways"}}}}}}
    with pytest.raises(FileError) as err:
        load_topology(MAIL_DMZ, overrides=bad)
    assert "nodes.fw.services.firewall.proxy.mode" in str(err.value)


@pytest.mark.parametrize("base, over, expected", [
    ({"a": 1}, {"b": 2}, {"a": 1, "b": 2}),
    ({"a": {"x": 1, "y": 2}}, {"a": {"y": 3}}, {"a": {"x": 1, "y": 3}}),
    ({"a": [1, 2]}, {"a": [3]}, {"a": [3]}),
    ({"a": {"x": 1}}, {"a": "flat"}, {"a": "flat"}),
])
def test_deep_merge(base, over, expected) -> None:
    assert deep_merge(base, over) == expected
