"""Every service kind has a config model and a factory under the same name, and every
service module on disk is reachable from the registry (one file plus a registration)."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

from lab.model.services import SERVICE_CONFIGS
from lab.services.registry import FACTORIES

SERVICES_DIR = Path(__file__).resolve().parents[1] / "lab" / "services"
# the runtime every service kind shares (the protocol code lives in lab/protocols/, the
# commands run inside nodes in lab/nodecmds/)
PLUMBING = {"__init__", "base", "host", "netns", "registry"}


def test_configs_and_factories_agree() -> None:
    assert set(SERVICE_CONFIGS) == set(FACTORIES)


def _service_classes(path: Path) -> list[str]:
    tree = ast.parse(path.read_text())
    return [n.name for n in tree.body if isinstance(n, ast.ClassDef)
            and any(getattr(b, "id", None) == "Service" for b in n.bases)]


@pytest.mark.parametrize("module", sorted(p.stem for p in SERVICES_DIR.glob("*.py")
                                          if p.stem not in PLUMBING))
def test_service_module_is_registered(module: str) -> None:
    classes = _service_classes(SERVICES_DIR / f"{module}.py")
    assert classes, f"lab/services/{module}.py defines no Service: protocol code belongs in lab/protocols/"
    registry = (SERVICES_DIR / "registry.py").read_text()
    for cls in classes:
        assert cls in registry, f"{cls} from {module}.py is not used by the registry"
