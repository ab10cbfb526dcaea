"""Python hooks: steps that need code, registered by name so a team adds its own probe
without touching the runner.

A hook is ``fn(ctx: HookContext, **args) -> HookResult`` registered with ``@hook("name")``.
It acts on the lab only through ``ctx.run`` (the trainee's exec path, recorded in the
attempt) and ``ctx.probe`` (a built-in probe run in a node). Extra hook modules are
imported by name from a playbook's ``hooks:`` list or from LAB_PLAYBOOK_HOOKS
(comma-separated module paths).
"""
from __future__ import annotations

import importlib
import json
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from lab.errors import LabError

ENV = "LAB_PLAYBOOK_HOOKS"


@dataclass
class HookResult:
    """What a hook step gives back: facts (``<step id>.<key>``), text output, an rc."""

    facts: dict[str, Any] = field(default_factory=dict)
    output: str = ""
    rc: int = 0


@dataclass
class HookContext:
    lab: str
    node: str
    timeout: float
    commands: list[list[str]] = field(default_factory=list)

    def run(self, argv: list[str], node: str | None = None, stdin: str | None = None):
        """Run a command in a node (default: the step's) through nodeexec.run."""
        from lab.engine import nodeexec

        self.commands.append(argv)
        return nodeexec.run(self.lab, node or self.node, argv, self.timeout, stdin)

    def probe(self, kind: str, node: str | None = None, **args: Any) -> dict[str, Any]:
        """A built-in probe (dns, tcp, smtp, ping) run in a node; its JSON result."""
        p = self.run(probe_argv(kind, args), node)
        return parse_probe(p.stdout, p.returncode, p.stderr)


Hook = Callable[..., HookResult]
HOOKS: dict[str, Hook] = {}


def hook(name: str) -> Callable[[Hook], Hook]:
    """Register a hook under ``name`` (a second registration of a name is an error)."""
    def register(fn: Hook) -> Hook:
        if name in HOOKS and HOOKS[name] is not fn:
            raise LabError(f"playbook hook '{name}' is registered twice")
        HOOKS[name] = fn
        return fn
    return register


def load_hook_modules(modules: list[str]) -> None:
    """Import the built-in hooks, the modules named in LAB_PLAYBOOK_HOOKS and ``modules``."""
    names = ["lab.playbooks.builtin_hooks"]
    names += [m.strip() for m in os.environ.get(ENV, "").split(",") if m.strip()]
    names += modules
    for name in names:
        try:
            importlib.import_module(name)
        except ImportError as e:
            raise LabError(f"cannot import playbook hook module '{name}': {e}",
                           hint=f"a module path importable by {sys.executable}") from None


def get_hook(name: str) -> Hook:
    try:
        return HOOKS[name]
    except KeyError:
        known = ", ".join(sorted(HOOKS)) or "none"
        raise LabError(f"unknown playbook hook '{name}'", hint=f"registered hooks: {known}") from None


def probe_argv(kind: str, args: dict[str, Any]) -> list[str]:
    """The command that runs a built-in probe inside a node (the lab's own python)."""
    clean = {k: v for k, v in args.items() if v is not None}
    return [sys.executable, "-m", "lab.playbooks.probe", kind, json.dumps(clean)]


def parse_probe(stdout: str, rc: int, stderr: str) -> dict[str, Any]:
    try:
        result = json.loads(stdout.strip().splitlines()[-1])
        if isinstance(result, dict):
            return result
    except (ValueError, IndexError):
        pass
    tail = (stderr.strip().splitlines() or ["no output"])[-1]
    return {"error": f"probe failed (rc {rc}): {tail}"}
