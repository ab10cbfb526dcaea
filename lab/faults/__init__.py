"""The fault catalog: every fault by name, assembled from the family modules.

A family is one module here with a ``FAULTS`` list; adding a family means adding its
module to ``FAMILIES``. Helpers shared by the families live in ``_support`` (editing
zones, the firewall, resolv.conf) and ``_checks`` (asking the lab's network for the
repair checks); drawing a scenario's faults from a seed lives in ``draw``.
"""
from __future__ import annotations

from dataclasses import asdict
from typing import Any

from lab.errors import LabError
from lab.faults import alerts, dns, isp, links, nat, proxy, server, tls
from lab.faults.base import AnswerKey, Cause, Fault, LabContext, Repair

FAMILIES = (dns, nat, proxy, server, alerts, links, tls, isp)
ACTIONS = ("apply", "revert", "check")


def _catalog() -> dict[str, Fault]:
    out: dict[str, Fault] = {}
    for module in FAMILIES:
        for fault in module.FAULTS:
            if fault.name in out:
                raise RuntimeError(f"fault {fault.name} is defined twice")
            out[fault.name] = fault
    return out


CATALOG: dict[str, Fault] = _catalog()


def get_fault(name: str) -> Fault:
    try:
        return CATALOG[name]
    except KeyError:
        raise LabError(f"unknown fault '{name}'",
                       hint="faults: " + ", ".join(sorted(CATALOG))) from None


async def act(lab: LabContext, action: str, name: str, params: dict[str, Any] | None = None,
              applied: dict[str, Any] | None = None) -> dict[str, Any]:
    """`lab fault ACTION NAME`: apply, revert or check one fault by hand. Params not given
    come from ``applied`` (the params the running attempt applied this fault with), else
    are drawn with seed 0, the same for every action, so that apply, check and revert of
    the same command line concern the same fault. The answer key goes back to the caller
    only (it is never written where a node could read it)."""
    if action not in ACTIONS:
        raise LabError(f"unknown fault action '{action}'", hint=", ".join(ACTIONS))
    fault = get_fault(name)
    parsed = fault.resolve(lab.roles, {**(applied or {}), **(params or {})})
    out: dict[str, Any] = {"fault": name, "params": parsed.model_dump(mode="json"),
                           "answer": asdict(fault.answer(parsed, lab.roles))}
    if action == "check":
        out["repair"] = asdict(await fault.check_repaired(lab, parsed))
    else:
        await getattr(fault, action)(lab, parsed)
    return out


__all__ = ["ACTIONS", "CATALOG", "AnswerKey", "Cause", "Fault", "LabContext", "Repair", "act",
           "get_fault"]
