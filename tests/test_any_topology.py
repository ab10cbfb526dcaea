"""Probes, faults and repair checks on a topology with other node names, addresses,
domains and segments than the reference: they read all of these from the roles.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from lab.model.roles import derive_roles
from lab.model.topology import load_topology

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT / "topologies" / "mail-dmz.yaml"

RENAMED_NODES = {"dns-root": "root-ns", "dns-tld": "org-ns", "ns-ext": "pub-ns",
                 "resolver": "isp-dns", "mx-ext": "partner", "ext-ws": "laptop", "fw": "gw",
                 "mx": "mailhub", "ns-int": "office-ns", "admin": "desk"}


def renamed_topology() -> str:
    """The reference with every node, address, domain and segment renamed: nothing of
    the reference is left for the library to lean on."""
    text = REFERENCE.read_text().split("\n# The firewall's SMTP proxy modes")[0]
    text = (text.replace("203.0.113.", "198.51.100.").replace("10.1.0.", "10.7.0.")
            .replace("example.net", "example.org").replace('"net. NS', '"org. NS')
            .replace("          net:", "          org:").replace("name: mail-dmz", "name: renamed"))
    data = yaml.safe_load(text)
    data["segments"] = {"wan": data["segments"]["inet"], "office": data["segments"]["lan"]}
    nodes = {}
    for name, node in data["nodes"].items():
        for intf in node["interfaces"]:
            intf["segment"] = {"inet": "wan", "lan": "office"}[intf["segment"]]
        fw = node.get("services", {}).get("firewall")
        if fw:
            fw.update(external="wan", internal="office")
        nodes[RENAMED_NODES[name]] = node
    data["nodes"] = nodes
    return yaml.safe_dump(data, sort_keys=False)


def test_the_renamed_topology_derives_its_own_roles(tmp_path: Path) -> None:
    path = tmp_path / "renamed.yaml"
    path.write_text(renamed_topology())
    roles = derive_roles(load_topology(path))
    assert (roles.firewall, roles.mail_server, roles.public_dns, roles.sender) == (
        "gw", "mailhub", "pub-ns", "partner")
    assert (roles.mail_domain, roles.mail_public, roles.parent_zone) == (
        "example.org", "198.51.100.25", "org")


@pytest.fixture(scope="module")
def renamed_lab(module_labs, tmp_path_factory):
    path = tmp_path_factory.mktemp("topo") / "renamed.yaml"
    path.write_text(renamed_topology())
    return module_labs.up("t-renamed", topology=str(path))


def _verify(lab_cli, lab: str) -> dict[str, bool]:
    p = lab_cli("verify", "--lab", lab, "--json")
    return {r["name"]: r["passed"] for r in json.loads(p.stdout)}


def _fault(lab_cli, lab: str, action: str, name: str) -> dict:
    p = lab_cli("fault", action, name, "--lab", lab)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


@pytest.mark.root
def test_verify_runs_the_three_probes_on_another_topology(renamed_lab, lab_cli) -> None:
    for _ in range(3):  # the very first resolutions after `lab up` may time out
        results = _verify(lab_cli, renamed_lab)
        if all(results.values()):
            break
    assert results == {"inbound": True, "outbound": True, "alert": True}


@pytest.mark.root
@pytest.mark.parametrize("name, node, probe", [
    ("fw-smtp-permit-missing", "gw", "inbound"),
    ("dns-wrong-address", "pub-ns", "inbound"),
    ("host-resolver-wrong", "mailhub", "outbound"),
    ("dns-no-split-view", "gw", "alert"),
])
def test_faults_work_on_another_topology(renamed_lab, lab_cli, name, node, probe) -> None:
    applied = _fault(lab_cli, renamed_lab, "apply", name)
    assert applied["answer"]["node"] == node
    try:
        assert _verify(lab_cli, renamed_lab)[probe] is False
        assert _fault(lab_cli, renamed_lab, "check", name)["repair"]["repaired"] is False
    finally:
        _fault(lab_cli, renamed_lab, "revert", name)
    check = _fault(lab_cli, renamed_lab, "check", name)["repair"]
    assert check["repaired"] is True, check
    assert _verify(lab_cli, renamed_lab)[probe] is True
