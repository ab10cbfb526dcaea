"""Bad topology files get a clear error naming file, line and field, and build nothing
(docs/design.md, hard rule 5).

Each ``tests/golden/topologies/NAME.yaml`` is a broken topology; ``NAME.stderr`` next to it
is what `lab validate` prints for it (``NAME.up.stderr``: what `lab up` prints). Regenerate
them with ``UPDATE_GOLDEN=1``. `lab validate` needs no root, so those tests run for anyone.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

GOLDEN = Path(__file__).resolve().parent / "golden" / "topologies"
REL = "tests/golden/topologies"  # paths as the user types them, from the project root
CASES = sorted(p.stem for p in GOLDEN.glob("*.yaml"))
UPDATE = os.environ.get("UPDATE_GOLDEN") == "1"
NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]


def check_golden(path: Path, actual: str) -> None:
    if UPDATE:
        path.write_text(actual)
    assert path.exists(), f"no golden file {path.name}: run with UPDATE_GOLDEN=1"
    assert actual == path.read_text()


def test_there_are_golden_cases():
    assert {"yaml_syntax", "unknown_field", "bad_address", "address_outside_segment",
            "duplicate_address", "unknown_segment", "gateway_off_segment", "outside_ranges",
            "several_errors", "several_cross_field_errors"} <= set(CASES)


@pytest.mark.parametrize("case", CASES)
def test_validate_error_matches_golden(lab_cli, case):
    p = lab_cli("validate", f"{REL}/{case}.yaml")
    assert (p.returncode, p.stdout) == (1, "")
    check_golden(GOLDEN / f"{case}.stderr", p.stderr)


@pytest.mark.parametrize("case", CASES)
def test_every_error_names_file_line_and_field(lab_cli, case):
    lines = lab_cli("validate", f"{REL}/{case}.yaml").stderr.splitlines()
    path = re.escape(f"{REL}/{case}.yaml")
    count = re.fullmatch(rf"lab: error: {path}: (\d+) errors?", lines[0])
    assert count, lines[0]
    problems, hint = lines[1:-1], lines[-1]
    assert len(problems) == int(count.group(1)) >= 1
    field = "YAML" if case == "yaml_syntax" else r"[a-z][\w.\-\[\]]*"
    for line in problems:
        assert re.fullmatch(rf"  {path}:\d+: {field}: \S.*", line), line
    assert hint.startswith("hint: ")


@pytest.mark.parametrize(("case", "count"), [("several_errors", 5),
                                              ("several_cross_field_errors", 4)])
def test_several_errors_reported_in_one_run(lab_cli, case, count):
    problems = lab_cli("validate", f"{REL}/{case}.yaml").stderr.splitlines()[1:-1]
    assert len(problems) == count


def test_cross_field_mistakes_shown_beside_schema_errors(lab_cli):
    """Schema errors do not hide the cross-field checks of the rest of the file; only the
    entry with a schema error (node ns: unknown field) is not cross-checked."""
    problems = lab_cli("validate", f"{REL}/several_errors.yaml").stderr
    for field in ("aliases[0]", "nodes.mx.interfaces[0].address", "nodes.mx.gateway",
                  "nodes.ns.colour", "nodes.ws.interfaces[0].address"):
        assert field in problems


def test_reference_topology_validates(lab_cli):
    p = lab_cli("validate", "topologies/mail-dmz.yaml")
    assert (p.returncode, p.stderr) == (0, "")
    assert re.fullmatch(r"topologies/mail-dmz\.yaml: ok \(10 nodes, 2 segments, 2 variants checked\)\n", p.stdout)


@pytest.mark.root
def test_validate_works_unprivileged(lab_cli):
    p = lab_cli("validate", f"{REL}/unknown_field.yaml", prefix=NOBODY)
    assert (p.returncode, p.stderr) == (1, (GOLDEN / "unknown_field.stderr").read_text())


@pytest.mark.root
def test_up_with_bad_file_prints_golden_and_builds_nothing(labs, lab_cli, host_view, state_root):
    before = host_view()
    name = labs.claim("t-bad-up")  # torn down (and checked gone) even if it did build
    p = lab_cli("up", f"{REL}/several_errors.yaml", "--lab", name)
    assert (p.returncode, p.stdout) == (1, "")
    check_golden(GOLDEN / "several_errors.up.stderr", p.stderr)
    assert not (state_root / name).exists()
    after = host_view()
    assert {k: after[k] for k in ("links", "bridges", "netns")} == \
        {k: before[k] for k in ("links", "bridges", "netns")}
