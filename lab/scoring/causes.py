"""The menu of causes: one for every exercise, derived from the fault catalog.

Each fault declares its cause (or causes) in lab/faults/; a trainee submits a diagnosis as
a cause id from this menu plus a node name. The menu is the same whatever scenario runs,
so reading it (``lab causes``) reveals nothing about the injected faults. Causes are
ordered by the layer the method checks first (DNS, then the network, then the firewall,
then the servers), in catalog order within a layer.
"""
from __future__ import annotations

from lab.errors import LabError
from lab.faults import CATALOG
from lab.faults.base import LAYERS, Cause, Fault, Layer


def causes_of(faults: list[Fault]) -> tuple[Cause, ...]:
    """Every cause the faults declare, once, in menu order. Two faults may share a cause
    only if they declare it identically."""
    seen: dict[str, tuple[Cause, str]] = {}
    for fault in faults:
        if not fault.causes:
            raise RuntimeError(f"fault {fault.name} declares no cause")
        for cause in fault.causes:
            if cause.id in seen and seen[cause.id][0] != cause:
                raise RuntimeError(f"cause {cause.id} is declared differently by "
                                   f"{seen[cause.id][1]} and {fault.name}")
            seen.setdefault(cause.id, (cause, fault.name))
    ordered = [c for c, _ in seen.values()]
    return tuple(sorted(ordered, key=lambda c: LAYERS.index(c.layer)))


CAUSES: tuple[Cause, ...] = causes_of(list(CATALOG.values()))
CAUSE_IDS: frozenset[str] = frozenset(c.id for c in CAUSES)
_BY_ID = {c.id: c for c in CAUSES}


def get_cause(cause_id: str) -> Cause:
    """The cause with this id; a LabError naming the menu if there is none."""
    try:
        return _BY_ID[cause_id]
    except KeyError:
        raise LabError(f"unknown cause '{cause_id}'",
                       hint="`lab causes` lists the cause ids") from None


def render_causes() -> str:
    """The menu as ``lab causes`` prints it, grouped by layer in the method's order."""
    width = max(len(c.id) for c in CAUSES)
    out: list[str] = []
    for layer in LAYERS:
        out.append(f"{layer}:")
        out += [f"  {c.id:<{width}}  {c.description}" for c in CAUSES if c.layer == layer]
    return "\n".join(out) + "\n"


__all__ = ["CAUSES", "CAUSE_IDS", "LAYERS", "Cause", "Layer", "causes_of", "get_cause",
           "render_causes"]
