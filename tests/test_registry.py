"""Every service kind has a config model and a factory under the same name, and every
service module on disk is reachable from the registry (one file plus a registration)."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

from lab.model.services import SERVICE_CONFIGS
from lab.services.registry import FACTORIES

SERVICES_DIR = Path(__file__).resolve().parents[1] / "lab" / "services"
# modules that are not service kinds: shared plumbing and the commands run inside nodes
NOT_KINDS = {"__init__", "base", "host", "netns", "registry", "zonefile", "smtpclient",
             "mxlookup", "mailq", "netguard", "alert_cli", "fwlog", "nftrules",
             "dnscache", "resolver", "dnszones", "maillog", "mbox",
             "dnsanswer", "dnstcp", "dnswire", "dnsxfr", "zonedata", "delivery", "mtaqueue",
             "proxyrelay", "smtpd", "smtpwire", "tlsca", "tlsnames", "postqueue"}


def test_configs_and_factories_agree() -> None:
    assert set(SERVICE_CONFIGS) == set(FACTORIES)


def _service_classes(path: Path) -> list[str]:
    tree = ast.parse(path.read_text())
    return [n.name for n in tree.body if isinstance(n, ast.ClassDef)
            and any(getattr(b, "id", None) == "Service" for b in n.bases)]


@pytest.mark.parametrize("module", sorted(p.stem for p in SERVICES_DIR.glob("*.py")
                                          if p.stem not in NOT_KINDS))
def test_service_module_is_registered(module: str) -> None:
    classes = _service_classes(SERVICES_DIR / f"{module}.py")
    assert classes, f"lab/services/{module}.py defines no Service: list it in NOT_KINDS"
    registry = (SERVICES_DIR / "registry.py").read_text()
    for cls in classes:
        assert cls in registry, f"{cls} from {module}.py is not used by the registry"
