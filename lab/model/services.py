"""Which role configs a node may carry under ``services:``, and their models.

A new service kind is one config model here plus one factory in lab/services/registry.py.
"""
from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ValidationError

from lab.model.alerts import AlertsConfig
from lab.model.dns import DnsConfig
from lab.model.firewall import FirewallConfig
from lab.model.mta import MtaConfig

Loc = tuple[Any, ...]

SERVICE_CONFIGS: dict[str, type[BaseModel]] = {
    "dns": DnsConfig,
    "smtp": MtaConfig,
    "firewall": FirewallConfig,
    "alerts": AlertsConfig,
}


def parse_service(kind: str, raw: dict[str, Any]) -> BaseModel:
    return SERVICE_CONFIGS[kind].model_validate(raw)


def service_problems(base: Loc, services: dict[str, Any]) -> list[tuple[Loc, str]]:
    """Every problem in a node's ``services:`` mapping, each with its field path."""
    found: list[tuple[Loc, str]] = []
    for kind, raw in services.items():
        loc = base + (kind,)
        model = SERVICE_CONFIGS.get(kind)
        if model is None:
            found.append((loc, f"unknown service '{kind}' (known: {', '.join(SERVICE_CONFIGS)})"))
            continue
        try:
            model.model_validate(raw or {})
        except ValidationError as e:
            for err in e.errors():
                found.append((loc + tuple(err["loc"]), err["msg"].removeprefix("Value error, ")))
    return found
