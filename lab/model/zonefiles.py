"""Zones written as BIND master files next to a topology file (``zone_file:``).

When a topology is loaded, each zone's ``zone_file`` (a path relative to the topology
file's directory) is read into the zone's ``master`` text, and every file it ``$INCLUDE``s
(relative to the master file's own directory) into ``includes``, so that the model carries
the files' text: a lab's copy of the topology, a variant or a scenario's overrides need
nothing else. Bounded like every input file (1 MB each, UTF-8, at most 16 included), and
confined to the topology's directory: a path that leaves it is an error with its line.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from lab.model import yamlload
from lab.protocols.masterfile import collect_includes
from lab.protocols.zonefile import ZoneError

Loc = tuple[Any, ...]


def read_zone_files(data: Any, base: Path) -> list[tuple[Loc, str]]:
    """Fill ``master`` and ``includes`` of every zone of ``data`` (a topology mapping)
    that names a ``zone_file`` and has no ``master`` yet; the problems, each with its
    field."""
    found: list[tuple[Loc, str]] = []
    for name, node in _mapping(data, "nodes").items():
        zones = _mapping(_mapping(_mapping(node, "services"), "dns"), "zones")
        for zone, spec in zones.items():
            if not isinstance(spec, dict) or not isinstance(spec.get("zone_file"), str) \
                    or spec.get("master") is not None:
                continue
            loc = ("nodes", name, "services", "dns", "zones", zone, "zone_file")
            try:
                spec["master"], spec["includes"] = _read(base, spec["zone_file"])
            except ZoneError as e:
                found.append((loc, str(e)))
    return found


def _mapping(data: Any, key: str) -> dict:
    """``data[key]`` when both are mappings, else an empty one (the model reports the
    wrong shape with its field)."""
    value = data.get(key) if isinstance(data, dict) else None
    return value if isinstance(value, dict) else {}


def _read(base: Path, rel: str) -> tuple[str, dict[str, str]]:
    main = _inside(base, rel)
    text = _text(main, rel)
    includes = collect_includes(text, lambda p: _text(_inside(main.parent, p), p), rel)
    return text, includes


def _inside(base: Path, rel: str) -> Path:
    """``rel`` under ``base``, refusing anything that would leave it."""
    path = (base / rel).resolve()
    if Path(rel).is_absolute() or not path.is_relative_to(base.resolve()):
        raise ZoneError(f"{rel}: a zone file must be inside the topology file's directory")
    return path


def _text(path: Path, rel: str) -> str:
    try:
        raw = yamlload.read_limited(path)
    except OSError as e:
        raise ZoneError(f"cannot read {rel}: {e.strerror or e}") from None
    if raw is None:
        raise ZoneError(f"{rel}: larger than {yamlload.MAX_BYTES} bytes")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ZoneError(f"{rel}: not UTF-8 text") from None
