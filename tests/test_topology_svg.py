"""The topology picture: every node drawn once with its addresses, attachments where the
topology has them, faulty nodes marked, text escaped; the CLI writes the same document."""
from __future__ import annotations

import os
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from conftest import LAB_CMD

from lab.model.topology import load_topology
from lab.ui.topology_svg import render_svg

SVG = "{http://www.w3.org/2000/svg}"
REF = Path(__file__).resolve().parents[1] / "topologies" / "mail-dmz.yaml"
THREE_LEGS = """\
name: three
segments:
  inet: {subnet: 203.0.113.0/24}
  dmz: {subnet: 198.51.100.0/24}
  lan: {subnet: 10.1.0.0/24}
nodes:
  gw:
    description: "a <three-legged> & odd firewall"
    interfaces:
      - {segment: inet, address: 203.0.113.1/24}
      - {segment: dmz, address: 198.51.100.1/24}
      - {segment: lan, address: 10.1.0.1/24}
  relay: {interfaces: [{segment: dmz, address: 198.51.100.25/24}]}
  mx: {interfaces: [{segment: lan, address: 10.1.0.25/24}]}
"""


def groups(svg: str) -> dict[str, ET.Element]:
    root = ET.fromstring(svg)
    return {g.get("data-node"): g for g in root.iter(f"{SVG}g") if g.get("data-node")}


def texts(group: ET.Element) -> list[str]:
    return [t.text or "" for t in group.iter(f"{SVG}text")]


@pytest.fixture(scope="module")
def reference():
    return load_topology(REF)


def test_every_node_once_with_its_addresses(reference):
    drawn = groups(render_svg(reference))
    assert list(drawn) == list(reference.nodes)
    for name, node in reference.nodes.items():
        shown = " ".join(texts(drawn[name]))
        for addr in node.addresses():
            assert str(addr) in shown, (name, addr)


@pytest.mark.parametrize("name", ["fw", "mx", "ext-ws"])
def test_one_attachment_dot_per_interface(reference, name):
    drawn = groups(render_svg(reference))
    dots = list(drawn[name].iter(f"{SVG}circle"))
    assert len(dots) == len(reference.nodes[name].interfaces)


def test_marked_nodes_are_drawn_faulty(reference):
    drawn = groups(render_svg(reference, marked={"mx"}))
    faulty = {n for n, g in drawn.items()
              if any("faulty" in (r.get("class") or "") for r in g.iter(f"{SVG}rect"))}
    assert faulty == {"mx"}
    assert "FAULT" in texts(drawn["mx"])


def test_three_segments_and_escaping(tmp_path):
    path = tmp_path / "three.yaml"
    path.write_text(THREE_LEGS)
    svg = render_svg(load_topology(path))
    drawn = groups(svg)  # parses: the description's < and & are escaped
    assert len(list(drawn["gw"].iter(f"{SVG}circle"))) == 3
    title = drawn["gw"].find(f"{SVG}title").text
    assert title == "gw: a <three-legged> & odd firewall"


def test_cli_writes_the_same_picture(tmp_path, reference, lab_cli):
    out = tmp_path / "ref.svg"
    p = lab_cli("topology", "mail-dmz", "--svg", str(out))
    assert p.returncode == 0, p.stderr
    assert out.read_text() == render_svg(reference)


def test_cli_unwritable_path_is_a_clear_error(lab_cli):
    p = lab_cli("topology", "mail-dmz", "--svg", "/nonexistent-dir/x.svg")
    assert p.returncode == 1
    assert p.stderr.startswith("lab: error: cannot write /nonexistent-dir/x.svg")
    assert "Traceback" not in p.stderr


def test_a_reader_that_stops_early_ends_the_command_quietly():
    """`lab topology NAME --roles | head -1`: the reader has gone when the command writes,
    and the command ends as Unix tools do (status 141, SIGPIPE), without a BrokenPipeError
    traceback. The read end is closed before the command has even started writing (its
    imports take far longer than these two calls), so its very first write fails."""
    read, write = os.pipe()
    lab = subprocess.Popen([*LAB_CMD, "topology", "mail-dmz", "--roles"], stdout=write,
                           stderr=subprocess.PIPE)
    os.close(write)
    os.close(read)
    err = lab.stderr.read().decode()
    assert (lab.wait(timeout=30), err) == (141, "")
