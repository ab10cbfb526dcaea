"""BIND master files as written (lab/protocols/masterfile.py): $TTL, $ORIGIN, $INCLUDE,
records over several lines in parentheses, blank owners, comments; edits that change only
what they must; named-checkzone accepts every file the lab writes; zones read from files
next to a topology (zone_file)."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from dnslib import QTYPE

from lab.model.source import FileError
from lab.model.topology import load_topology
from lab.protocols.masterfile import collect_includes, read_master
from lab.protocols.zonedata import load_zone
from lab.protocols.zonefile import ZoneError

ROOT = Path(__file__).resolve().parents[1]
ZONES = ROOT / "topologies" / "zones"

MAIN = """\
; the zone, as an admin keeps it
$TTL 1h
$ORIGIN example.org.
@   IN  SOA ns hostmaster (2026120101 ; serial
            3600 600    ; refresh, retry
            86400 300)  ; expire, minimum
    IN  NS  ns          ; the name server
    IN  MX  10 mx
ns  IN  A   198.51.100.53
www 300 IN CNAME mx     ; its own TTL
$INCLUDE hosts.inc lan.example.org.
mx  IN  A   198.51.100.25
txt IN  TXT "v=spf1 mx; -all"
"""
HOSTS = """\
; hosts of lan.example.org (the origin given to $INCLUDE)
pc1     A   198.51.100.71
        A   198.51.100.72   ; two addresses, the owner left blank
$TTL 2h
pc2     A   198.51.100.73
"""


def master():
    return read_master("example.org", MAIN, {"hosts.inc": HOSTS}, "db.example.org")


def short(rr) -> tuple[str, str, int, str]:
    return (str(rr.rname), QTYPE.get(rr.rtype), rr.ttl, str(rr.rdata))


def test_records_follow_ttl_origin_include_parentheses_and_blank_owners():
    records = [short(rr) for rr in master().records(0)]
    assert records == [
        ("example.org.", "SOA", 3600,
         "ns.example.org. hostmaster.example.org. 2026120101 3600 600 86400 300"),
        ("example.org.", "NS", 3600, "ns.example.org."),
        ("example.org.", "MX", 3600, "10 mx.example.org."),
        ("ns.example.org.", "A", 3600, "198.51.100.53"),
        ("www.example.org.", "CNAME", 300, "mx.example.org."),
        ("pc1.lan.example.org.", "A", 3600, "198.51.100.71"),
        ("pc1.lan.example.org.", "A", 3600, "198.51.100.72"),
        ("pc2.lan.example.org.", "A", 7200, "198.51.100.73"),
        # after $INCLUDE: the origin and the owner are back, the $TTL is not (as named)
        ("mx.example.org.", "A", 7200, "198.51.100.25"),
        ("txt.example.org.", "TXT", 7200, '"v=spf1 mx; -all"'),
    ]


def test_entries_know_their_file_and_lines():
    m = master()
    (soa,) = m.find("example.org.", "SOA")
    assert (soa.file, soa.first, soa.last) == ("", 3, 5)
    (pc2,) = m.find("pc2.lan.example.org.", "A")
    assert (pc2.file, pc2.first) == ("hosts.inc", 4)
    assert m.serial() == 2026120101


@pytest.mark.parametrize(("text", "includes", "message"), [
    ("$TTL 1h\n@ SOA ns h (1 2 3\n", {}, "db.example.org:2: unbalanced parentheses"),
    ("$TTL 1h\n  A 198.51.100.1\n", {}, "db.example.org:2: record 'A 198.51.100.1': no owner"),
    ("$GENERATE 1-9 h$ A 198.51.100.$\n", {}, "db.example.org:1: directive $GENERATE is not"),
    ("$INCLUDE ../etc/passwd\n", {}, "db.example.org:1: $INCLUDE ../etc/passwd: only files"),
    ("$INCLUDE /etc/passwd\n", {}, "db.example.org:1: $INCLUDE /etc/passwd: only files"),
    ("$INCLUDE missing.inc\n", {}, "db.example.org:1: $INCLUDE missing.inc: file not found"),
    ("$TTL 1h\n@ SOA ns h 1 2 3 4 5\n$INCLUDE a\n", {"a": "x A 198.51.100.300\n"},
     "a:1: record 'x A 198.51.100.300': '198.51.100.300' is not a valid A address"),
])
def test_errors_name_the_file_and_line(text, includes, message):
    with pytest.raises(ZoneError) as err:
        read_master("example.org", text, includes, "db.example.org").records(300)
    assert str(err.value).startswith(message), str(err.value)


def test_collect_includes_follows_nested_files_and_refuses_escapes():
    files = {"a.inc": "$INCLUDE b.inc\n", "b.inc": "x A 198.51.100.1\n"}
    assert collect_includes("$INCLUDE a.inc\n", files.__getitem__) == files
    with pytest.raises(ZoneError, match="only files beside"):
        collect_includes("$INCLUDE ../x\n", files.__getitem__)


# --- editing --------------------------------------------------------------------------------


def test_serial_of_a_multi_line_soa_is_bumped_in_place():
    m = master()
    assert m.bump_serial()
    assert m.files[""][3] == "@   IN  SOA ns hostmaster (2026120102 ; serial"
    assert m.changed == {""}


def test_set_data_keeps_columns_and_comments():
    m = master()
    m.set_data(m.find("pc1.lan.example.org.", "A")[1], "198.51.100.79")
    assert m.files["hosts.inc"][2] == "        A   198.51.100.79   ; two addresses, the owner " \
                                      "left blank"
    m.set_data(m.find("example.org.", "MX")[0], "20 mx2.isp.test.")
    assert m.files[""][7] == "    IN  MX  20 mx2.isp.test."
    assert m.changed == {"", "hosts.inc"}


def test_a_multi_line_record_keeps_its_lines_when_the_fields_are_as_many():
    m = master()
    m.set_data(m.find("example.org.", "SOA")[0], "ns h 7 1 2 3 4")
    assert m.files[""][3:6] == ["@   IN  SOA ns h (7 ; serial", "            1 2    ; refresh, retry",
                                "            3 4)  ; expire, minimum"]
    assert short(m.records(0)[0])[3] == "ns.example.org. h.example.org. 7 1 2 3 4"


def test_a_multi_line_record_with_other_fields_is_rewritten_on_one_line():
    m = read_master("example.org", '$TTL 1h\n@ SOA ns h 1 2 3 4 5\ntxt IN TXT ( "a"\n  "b" )\n')
    m.set_data(m.find("txt.example.org.", "TXT")[0], '"a" "b" "c"')
    assert m.files[""][2:] == ['txt\tIN TXT "a" "b" "c"']
    assert m.records(0)[1].rdata.data == [b"a", b"b", b"c"]


def test_delete_names_the_owner_a_following_record_inherited():
    m = master()
    m.delete(m.find("pc1.lan.example.org.", "A")[0])
    assert m.files["hosts.inc"][1] == "pc1        A   198.51.100.72   ; two addresses, the " \
                                      "owner left blank"
    assert [short(rr)[0] for rr in m.records(0)].count("pc1.lan.example.org.") == 1


def test_insert_after_writes_in_the_anchors_columns():
    m = master()
    m.insert_after(m.find("example.org.", "MX")[0], "example.org.", "MX", "20 mx2.isp.test.")
    assert m.files[""][8] == "    IN  MX  20 mx2.isp.test."
    m.insert_after(m.find("ns.example.org.", "A")[0], "smtp.example.org.", "A", "198.51.100.26")
    assert "smtp IN A     198.51.100.26" in m.files[""]
    names = [short(rr)[:2] for rr in m.records(0)]
    assert ("smtp.example.org.", "A") in names and ("www.example.org.", "CNAME") in names


# --- named-checkzone reads what the lab writes ---------------------------------------------------


def _write(tmp: Path, m) -> None:
    (tmp / "db.example.org").write_text(m.text())
    for name in m.files:
        if name:
            (tmp / name).write_text(m.text(name))


def _edits():
    def mx(m):
        m.set_data(m.find("example.org.", "MX")[0], "20 mx2.example.net.")

    def drop(m):
        m.delete(m.find("pc1.lan.example.org.", "A")[0])

    def add(m):
        m.insert_after(m.find("example.org.", "NS")[0], "example.org.", "MX", "30 backup")

    def soa(m):
        m.set_data(m.find("example.org.", "SOA")[0], "ns h 7 3600 600 86400 300")

    return {"none": lambda m: None, "mx": mx, "delete": drop, "add": add, "soa": soa}


@pytest.mark.skipif(not shutil.which("named-checkzone"), reason="named-checkzone (bind9-utils)")
@pytest.mark.parametrize("edit", sorted(_edits()))
def test_named_checkzone_accepts_the_edited_files(tmp_path, edit):
    m = master()
    _edits()[edit](m)
    m.bump_serial()
    _write(tmp_path, m)
    p = subprocess.run(["named-checkzone", "-w", str(tmp_path), "example.org", "db.example.org"],
                       capture_output=True, text=True, timeout=30, check=False)
    assert p.returncode == 0, p.stdout + p.stderr
    assert f"loaded serial {m.serial()}" in p.stdout


@pytest.mark.skipif(not shutil.which("named-checkzone"), reason="named-checkzone (bind9-utils)")
@pytest.mark.parametrize("name", ["example.org.public", "example.org.internal"])
def test_the_reference_zone_files_load_in_named_checkzone_and_here(tmp_path, name):
    text = (ZONES / name).read_text()
    includes = collect_includes(text, lambda rel: (ZONES / rel).read_text())
    for rel, body in includes.items():
        (tmp_path / rel).write_text(body)
    (tmp_path / "db.example.org").write_text(text)
    p = subprocess.run(["named-checkzone", "-w", str(tmp_path), "example.org", "db.example.org"],
                       capture_output=True, text=True, timeout=30, check=False)
    assert p.returncode == 0, p.stdout + p.stderr
    assert load_zone("example.org", text, includes=includes).serial == 2026120101


# --- zone_file in a topology ----------------------------------------------------------------------


def _topology(tmp: Path, zone: dict) -> Path:
    data = {"name": "zf", "segments": {"s": {"subnet": "198.51.100.0/24"}},
            "nodes": {"ns": {"interfaces": [{"segment": "s", "address": "198.51.100.53/24"}],
                             "services": {"dns": {"zones": {"example.org": zone}}}}}}
    path = tmp / "zf.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def test_a_zone_file_next_to_the_topology_is_read_with_its_includes(tmp_path):
    (tmp_path / "zones").mkdir()
    (tmp_path / "zones" / "db.example.org").write_text(MAIN)
    (tmp_path / "zones" / "hosts.inc").write_text(HOSTS)
    topo = load_topology(_topology(tmp_path, {"zone_file": "zones/db.example.org"}))
    zone = topo.nodes["ns"].services["dns"]["zones"]["example.org"]
    assert zone["master"] == MAIN and zone["includes"] == {"hosts.inc": HOSTS}


@pytest.mark.parametrize(("files", "zone_file", "message"), [
    ({}, "zones/db.example.org", "cannot read zones/db.example.org"),
    ({}, "../outside", "must be inside the topology file's directory"),
    ({"zones/db.example.org": "$INCLUDE ../../x\n"}, "zones/db.example.org",
     "$INCLUDE ../../x: only files beside the zone file"),
    ({"zones/db.example.org": "@ SOA ns h 1 2 3 4 5\n@ NS ns\nns A 1.2.3\n"},
     "zones/db.example.org", "zones/db.example.org:3: record 'ns A 1.2.3'"),
])
def test_zone_file_errors_name_the_field_and_the_line(tmp_path, files, zone_file, message):
    for rel, text in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    with pytest.raises(FileError) as err:
        load_topology(_topology(tmp_path, {"zone_file": zone_file}))
    assert "zones.example.org" in err.value.message
    assert message in err.value.message, err.value.message


def test_records_and_a_zone_file_together_are_refused(tmp_path):
    (tmp_path / "db").write_text(MAIN.replace("$INCLUDE hosts.inc lan.example.org.\n", ""))
    with pytest.raises(FileError, match="either records or a zone_file"):
        load_topology(_topology(tmp_path, {"zone_file": "db", "records": ["@ NS ns"]}))
