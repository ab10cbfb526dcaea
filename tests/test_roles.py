"""The roles of a topology (lab/model/roles.py): derived from the services, named in a
``roles:`` block where they cannot be, checked with file:line errors, rendered into
templates. (Probes and faults on a topology with other names: test_any_topology.py.)
"""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from lab.errors import LabError
from lab.model.roles import derive_roles, render, skeleton
from lab.model.source import FileError
from lab.model.topology import Topology, load_topology

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT / "topologies" / "mail-dmz.yaml"


def reference() -> dict:
    return yaml.safe_load(REFERENCE.read_text())


def roles_of(data: dict):
    return derive_roles(Topology.model_validate(data))


EXPECTED = {  # what each role of the reference topology is, derived from its services
    "firewall": "fw", "fw_external": "inet", "fw_internal": "lan", "fw_external_if": "eth0",
    "fw_internal_if": "eth1", "fw_public": "203.0.113.1", "fw_private": "10.1.0.1",
    "mail_domain": "example.net", "mail_server": "mx", "mail_host": "mail.example.net",
    "mail_private": "10.1.0.25", "mail_public": "203.0.113.25", "mailbox": "postmaster",
    "alert_recipient": "admin@example.net", "public_dns": "ns-ext",
    "public_dns_address": "203.0.113.53", "parent_zone": "net", "parent_dns": "dns-tld",
    "root_dns": "dns-root", "internal_dns": "ns-int", "public_resolver": "resolver",
    "public_resolvers": ("resolver",), "internal_resolvers": ("ns-int",), "sender": "mx-ext",
    "sender_domain": "example.com", "outside_client": "ext-ws", "internal_client": "admin",
    "inside": ("mx", "ns-int", "admin"),
}


@pytest.mark.parametrize("role", sorted(EXPECTED))
def test_reference_roles_are_derived_from_the_services(role: str) -> None:
    assert getattr(derive_roles(load_topology(REFERENCE)), role) == EXPECTED[role]


def test_a_variant_keeps_the_roles_and_dns_may_point_elsewhere() -> None:
    roles = derive_roles(load_topology(REFERENCE, "inbound-to"))
    assert (roles.mail_host, roles.mail_public, roles.firewall) == (
        "mail.example.net", "203.0.113.25", "fw")


def test_ambiguity_leaves_a_role_unset_and_need_says_how_to_name_it() -> None:
    data = reference()
    data["nodes"]["ws2"] = {"interfaces": [{"segment": "lan", "address": "10.1.0.26/24"}],
                            "services": {"smtp": {"hostname": "ws2.example.net",
                                                  "domains": ["example.net"]}}}
    roles = roles_of(data)
    assert roles.mail_server is None
    with pytest.raises(LabError) as err:
        roles.need("mail_server")
    assert "has no mail server" in err.value.message and "roles:" in err.value.hint
    data["roles"] = {"mail_server": "mx"}
    assert roles_of(data).mail_server == "mx"


def test_a_named_role_wins_over_derivation() -> None:
    data = reference()
    data["roles"] = {"internal_client": "ns-int", "outside_client": "mx-ext"}
    roles = roles_of(data)
    assert (roles.internal_client, roles.outside_client) == ("ns-int", "mx-ext")
    assert roles.internal_client_address == "10.1.0.53"


def test_a_topology_without_a_mail_path_has_no_roles_but_loads() -> None:
    data = {"name": "tiny", "segments": {"s": {"subnet": "10.9.0.0/24"}},
            "nodes": {"a": {"interfaces": [{"segment": "s", "address": "10.9.0.1/24"}]}}}
    roles = roles_of(data)
    assert roles.firewall is None and roles.mail_server is None and roles.inside == ()
    with pytest.raises(LabError, match="topology tiny has no firewall"):
        roles.need("firewall")


def test_roles_block_errors_name_file_line_and_field(tmp_path: Path) -> None:
    text = REFERENCE.read_text().split("\n# The firewall's SMTP proxy modes")[0]
    text += ("\nroles:\n  mail_server: ns-int\n  firewall: nowhere\n"
             "  public_resolver: ns-ext\n  mail_domain: example.org\n  bogus: x\n")
    path = tmp_path / "t.yaml"
    path.write_text(text)
    with pytest.raises(FileError) as err:
        load_topology(path)
    base = len(text.splitlines()) - 6
    nodes = "dns-root, dns-tld, ns-ext, resolver, mx-ext, ext-ws, fw, mx, ns-int, admin"
    expected = [
        (base + 2, "roles.mail_server", "mail_server 'ns-int' has no smtp service"),
        (base + 3, "roles.firewall", f"unknown node 'nowhere' (nodes: {nodes})"),
        (base + 4, "roles.public_resolver",
         "public_resolver 'ns-ext' does not recurse (mode recursive)"),
    ]
    # every mistake at once: the unknown key, and the checks across fields of the rest
    assert err.value.problems == [*expected, (base + 6, "roles.bogus",
                                              "Extra inputs are not permitted")]
    assert f"{path}:{base + 3}: roles.firewall: unknown node 'nowhere'" in err.value.message
    path.write_text(text.replace("  bogus: x\n", "").replace("ns-int\n", "mx\n", 1))
    with pytest.raises(FileError) as err:
        load_topology(path)
    message = "'example.org' is not a domain of the mail server mx (example.net)"
    assert err.value.problems[-1] == (base + 5, "roles.mail_domain", message)


def test_templates_render_from_roles_and_name_what_is_missing() -> None:
    roles = derive_roles(load_topology(REFERENCE))
    text = "dig ${roles.mail_host} @${roles.public_dns_address} on ${params.node}"
    assert render(text, {**roles.vars(), "params.node": "ext-ws"}) == \
        "dig mail.example.net @203.0.113.53 on ext-ws"
    assert skeleton(text) == "dig <mail_host> @<public_dns_address> on <node>"
    with pytest.raises(LabError, match="unknown placeholder"):
        render("${roles.nonsense}", roles.vars())
    bare = roles_of({"name": "tiny", "segments": {"s": {"subnet": "10.9.0.0/24"}},
                     "nodes": {"a": {"interfaces": [{"segment": "s",
                                                     "address": "10.9.0.1/24"}]}}})
    with pytest.raises(LabError, match="has no mail host"):
        render("${roles.mail_host}", bare.vars(), "tiny")
