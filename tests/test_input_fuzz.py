"""Property-based fuzzing of every kind of input file (topology with its variants, scenario,
playbook), the way the hardening issue tried 1,600 mutated files: whatever the file holds,
loading it either succeeds or raises a FileError whose every problem names its line (and
field, or says what is wrong with the YAML); never another exception, never a pydantic URL;
each example within the product's bound of 2 s of CPU time, and the memory bounded.

Seeded and bounded: ``derandomize=True`` makes every run draw the same examples, so CI is
stable; ``max_examples`` keeps the whole module to a few seconds.
"""
from __future__ import annotations

import time
import tracemalloc
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lab.engine.attempt import params_models
from lab.engine.lifecycle import resolve_topology
from lab.model.playbook import load_playbook
from lab.model.scenario_check import check_scenario
from lab.model.source import FileError, Pos
from lab.model.topology import check_topology_file

ROOT = Path(__file__).resolve().parents[1]
BASES = {
    "topology": (ROOT / "topologies" / "mail-dmz.yaml").read_bytes(),
    "scenario": (ROOT / "scenarios" / "inbound-bounces.yaml").read_bytes(),
    "playbook": (ROOT / "playbooks" / "outbound.yaml").read_bytes(),
}
LOADERS = {
    "topology": check_topology_file,
    "scenario": lambda path: check_scenario(path, params_models(), resolve_topology),
    "playbook": load_playbook,
}
# no wall-clock deadline: the machine is shared; each example's CPU time is checked instead
FUZZ = settings(max_examples=100, derandomize=True, database=None, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.function_scoped_fixture])
MEMORY_MB = 200
CPU_SECONDS = 2.0

# pieces of YAML that broke or could break a loader: aliases, tags, nesting, control
# characters, odd scalars, names with a newline
SNIPPETS = [
    "&a ", "*a", "*b", "<<: *a\n", "&r [*r]", "{", "}", "[", "]", "- ", ": ", "? ", "\t",
    "\x00", "\x01", "\x1b", "\x7f", "\x85", "\ud7ff", "\ufeff", "\u2028", "'", '"', "\\",
    "#", "\n---\n", "\n...\n", "!!python/object:os.system ", "!!binary ", "!!set ",
    "!!omap ", "!custom ", "|", ">", "%YAML 1.1\n", "9" * 60, "0x", "0b", "0o", "1e999",
    "1:2:3", "2026-13-45", "~", "null", "yes", "no", ".nan", '"fw\\n"', "[" * 80, "]" * 80,
    "{a: 1, a: 2}", "x{99999999999}", "(" * 300, "${", "${a.b}", "é", "\U0001f600",
]
BYTES = [b"\xff", b"\xfe\xff", b"\xc3", b"\xed\xa0\x80", b"\x00", b"\r", b"\r\n"]

scalars = (st.none() | st.booleans() | st.integers(-2**70, 2**70)
           | st.floats(allow_nan=True) | st.text(max_size=30) | st.sampled_from(SNIPPETS))
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=5)
                      | st.dictionaries(st.text(max_size=12) | st.sampled_from(
                          ["name", "nodes", "fw", "interfaces", "fault", "params", "steps",
                           "when", "fact", "all", "any", "not", "variants"]), inner, max_size=5),
                      max_leaves=25)


def mutate_text(base: bytes, data: st.DataObject) -> bytes:
    """Edits at random places: insert a snippet, random text or bytes; delete a slice;
    duplicate or re-indent a line."""
    out = base
    for _ in range(data.draw(st.integers(1, 6), label="edits")):
        at = data.draw(st.integers(0, len(out)), label="at")
        kind = data.draw(st.sampled_from(["snippet", "text", "bytes", "delete", "duplicate",
                                          "indent"]), label="kind")
        if kind == "snippet":
            out = out[:at] + data.draw(st.sampled_from(SNIPPETS)).encode() + out[at:]
        elif kind == "text":
            out = out[:at] + data.draw(st.text(max_size=20)).encode("utf-8", "surrogatepass") \
                + out[at:]
        elif kind == "bytes":
            out = out[:at] + data.draw(st.sampled_from(BYTES)) + out[at:]
        elif kind == "delete":
            out = out[:at] + out[at + data.draw(st.integers(1, 200)):]
        else:
            lines = out.split(b"\n")
            i = data.draw(st.integers(0, len(lines) - 1))
            extra = lines[i] if kind == "duplicate" else b" " * data.draw(st.integers(1, 4)) \
                + lines[i]
            lines[i:i + 1] = [lines[i], extra] if kind == "duplicate" else [extra]
            out = b"\n".join(lines)
    return out


def replace_somewhere(doc: Any, value: Any, data: st.DataObject) -> Any:
    """``doc`` with one value (found by walking down at random) replaced by ``value``."""
    if not isinstance(doc, (dict, list)) or not doc or data.draw(st.integers(0, 3)) == 0:
        return value
    if isinstance(doc, dict):
        key = data.draw(st.sampled_from(sorted(doc, key=str)))
        return {**doc, key: replace_somewhere(doc[key], value, data)}
    i = data.draw(st.integers(0, len(doc) - 1))
    return doc[:i] + [replace_somewhere(doc[i], value, data)] + doc[i + 1:]


def assert_clear_outcome(kind: str, path: Path) -> None:
    """Success, or a FileError whose every problem has a line; nothing else; in bounded
    CPU time and memory (the peak of what reading this one file allocated)."""
    if not tracemalloc.is_tracing():
        tracemalloc.start()
    tracemalloc.reset_peak()
    before = tracemalloc.get_traced_memory()[0]
    started = time.process_time()
    try:
        LOADERS[kind](path)
    except FileError as e:
        assert e.problems, e
        for line, field, message in e.problems:
            assert isinstance(line, (int, Pos)) and (line if isinstance(line, int)
                                                     else line.line) >= 1, e
            assert field or message.startswith("YAML: ") or "top level" in message, e
            assert "pydantic.dev" not in message and "Traceback" not in message, e
    finally:
        cpu = time.process_time() - started
        peak = (tracemalloc.get_traced_memory()[1] - before) / 2**20
        tracemalloc.stop()
        assert cpu < CPU_SECONDS * 3, cpu  # tracemalloc itself slows Python down ~2-3x
        assert peak < MEMORY_MB, f"reading {path.name} allocated {peak:.0f} MB at its peak"


@pytest.mark.parametrize("kind", sorted(BASES))
@FUZZ
@given(data=st.data())
def test_mutated_text(kind, data, tmp_path_factory):
    path = tmp_path_factory.mktemp(kind) / f"{kind}.yaml"
    path.write_bytes(mutate_text(BASES[kind], data))
    assert_clear_outcome(kind, path)


@pytest.mark.parametrize("kind", sorted(BASES))
@FUZZ
@given(data=st.data(), value=values)
def test_mutated_structure(kind, data, value, tmp_path_factory):
    doc = yaml.safe_load(BASES[kind])
    text = yaml.safe_dump(replace_somewhere(doc, value, data), allow_unicode=True)
    path = tmp_path_factory.mktemp(kind) / f"{kind}.yaml"
    path.write_text(text)
    assert_clear_outcome(kind, path)
