"""The fault catalog: every fault by name, assembled from the family modules.

A family is one module here with a ``FAULTS`` list; adding a family means adding its
module to ``FAMILIES``. Helpers shared by the families live in ``_support``.
"""
from __future__ import annotations

from lab.errors import LabError
from lab.faults import alerts, dns, links, nat, server, tls
from lab.faults.base import AnswerKey, Fault, LabContext

FAMILIES = (dns, nat, server, alerts, links, tls)


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


__all__ = ["CATALOG", "AnswerKey", "Fault", "LabContext", "get_fault"]
