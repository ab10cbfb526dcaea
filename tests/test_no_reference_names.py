"""No module of the library names the reference topology's nodes, addresses or domains:
faults, probes, symptoms and the engine read them from the topology's roles.

The list is taken from the reference topologies themselves, topologies/mail-dmz.yaml and
topologies/isp-relay.yaml (node names, every address and subnet, every domain name their
services and zones mention), not copied here. The library's
string literals are searched (docstrings and comments may give examples; they wire
nothing). Node names with a hyphen are searched inside strings, the others (fw, mx,
admin, resolver) only as whole literals, since they are also ordinary words.
"""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
REFERENCES = [ROOT / "topologies" / "mail-dmz.yaml", ROOT / "topologies" / "isp-relay.yaml"]

# (file, name): why the name may stay. Keep it short.
ALLOWED = {
    ("lab/model/firewall.py", "fw"): "the rule syntax's keyword for the firewall itself "
                                     "(`from: fw`), defined as FIREWALL_ITSELF",
    ("lab/protocols/nftrules.py", "fw"): "renders that keyword of the rule syntax",
    ("lab/model/topology.py", "203.0.113.0/24"): "the RFC 5737 range lab addresses must come "
                                                 "from (docs/design.md, hard rule 1)",
    ("lab/model/topology.py", "198.51.100.0/24"): "the other RFC 5737 range",
    ("lab/history/messages.py", "admin"): "a role mailbox name (like postmaster, abuse) the "
                                          "background mail does not write from, not a node",
    # isp-relay's nodes `relay` and `mail` are ordinary words of SMTP and Postfix
    ("lab/model/mta.py", "relay"): "Postfix's relay transport (transport: relay:[host])",
    ("lab/faults/dns.py", "relay"): "a plausible MX host label the fault draws",
    ("lab/protocols/fwlog.py", "relay"): "the proxy's relay, in the connection log's wording",
    ("lab/model/playbook.py", "mail"): "the SMTP probe's MAIL stage",
    ("lab/playbooks/probe.py", "mail"): "the SMTP probe's MAIL stage",
    ("lab/protocols/maillog.py", "mail"): "the MAIL command in Postfix's disconnect line",
}

_NAME = re.compile(r"\b([a-z0-9-]+(?:\.[a-z0-9-]+)+)\.?$", re.IGNORECASE)


def _domains(data: dict) -> set[str]:
    """Every domain name with two labels or more the topology's services mention."""
    out: set[str] = set()

    def walk(value) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(k)
                walk(v)
        elif isinstance(value, list):
            for v in value:
                walk(v)
        elif isinstance(value, str):
            for token in value.replace("@", " ").split():
                m = _NAME.match(token.lower())
                if m and not _is_address(m.group(1)):
                    out.add(m.group(1))

    for node in data["nodes"].values():
        walk(node.get("services", {}))
    return {d for d in out if not d[0].isdigit()}


def _is_address(text: str) -> bool:
    return bool(re.fullmatch(r"[\d./]+", text))


def reference_names() -> dict[str, set[str]]:
    out: dict[str, set[str]] = {"nodes": set(), "addresses": set(), "domains": set()}
    for reference in REFERENCES:
        data = yaml.safe_load(reference.read_text())
        out["addresses"] |= {str(s["subnet"]) for s in data["segments"].values()}
        for node in data["nodes"].values():
            for intf in node["interfaces"]:
                out["addresses"].add(intf["address"].split("/")[0])
                out["addresses"] |= {a.split("/")[0] for a in intf.get("aliases", [])}
        out["nodes"] |= set(data["nodes"])
        out["domains"] |= _domains(data)
    return out


NAMES = reference_names()


def _pattern(kind: str, name: str) -> re.Pattern | None:
    if kind == "addresses":
        return re.compile(rf"(?<![\d.]){re.escape(name)}(?![\d/]|\.\d)")
    if kind == "domains":
        return re.compile(rf"(?<![\w-]){re.escape(name)}(?![\w-])", re.IGNORECASE)
    if "-" in name:
        return re.compile(rf"(?<![\w-]){re.escape(name)}(?![\w-])")
    return None  # a short node name: only a literal that is exactly the name


def _literals(path: Path):
    """(line, text) of every string literal except docstrings."""
    tree = ast.parse(path.read_text())
    docs = set()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr) \
                and isinstance(body[0].value, ast.Constant):
            docs.add(id(body[0].value))
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) \
                and id(node) not in docs:
            yield node.lineno, node.value


def hits(path: Path) -> list[str]:
    rel = str(path.relative_to(ROOT))
    found = []
    for line, text in _literals(path):
        for kind, names in NAMES.items():
            for name in names:
                if (rel, name) in ALLOWED:
                    continue
                pattern = _pattern(kind, name)
                if (pattern.search(text) if pattern else text == name):
                    found.append(f"{rel}:{line}: {name} in {text!r}")
    return found


MODULES = sorted((ROOT / "lab").rglob("*.py"))


def test_the_list_comes_from_the_reference_topology() -> None:
    """The names searched for are the reference's own, and there are plenty of each."""
    assert len(NAMES["nodes"]) >= 8 and "fw" in NAMES["nodes"]
    assert len(NAMES["addresses"]) >= 10
    assert {"example.net", "example.com"} <= NAMES["domains"]


def test_the_search_finds_what_it_looks_for(tmp_path: Path) -> None:
    """Positive control: a module that wires the reference in is caught (all kinds)."""
    bad = ROOT / "lab" / "_probe_for_test.py"
    try:
        bad.write_text('"""Docstrings may say mx-ext and 10.1.0.25."""\n'
                       'NODE = "fw"\nHOST = f"dig mail.example.net from {NODE}"\n'
                       'ADDR = ["10.1.0.25", "mx-ext"]\nOK = "fwd 10.1.0.250"\n')
        found = hits(bad)
    finally:
        bad.unlink()
    names = {f.split(": ", 2)[1].split(" in ")[0] for f in found}
    assert names == {"fw", "mail.example.net", "example.net", "10.1.0.25", "mx-ext"}
    assert not any(":1:" in f for f in found), "a docstring is not wiring"


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(ROOT / "lab")))
def test_module_names_no_reference_node_address_or_domain(path: Path) -> None:
    assert hits(path) == []


def test_every_allowed_exception_is_still_needed() -> None:
    for (rel, name), why in ALLOWED.items():
        assert why
        text = (ROOT / rel).read_text()
        assert name in text, f"{rel} no longer names {name}: drop it from ALLOWED"
