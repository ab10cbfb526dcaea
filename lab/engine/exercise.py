"""One attempt at a scenario in a running lab, held by the lab's supervisor.

The answer key (which faults were applied, their causes and nodes) lives only in this
process's memory until `lab score` writes the attempt record to the results directory,
which nodes cannot see (DESIGN.md rule 4).
"""
from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from lab.errors import LabError
from lab.faults import CATALOG, get_fault
from lab.faults.base import LabContext
from lab.faults.draw import Drawn, draw_faults
from lab.model.scenario import FaultRef, Scenario, load_scenario
from lab.scoring.attempt import Attempt, FaultKey, Probe, RepairResult
from lab.scoring.causes import CAUSE_IDS
from lab.scoring.damage import find_damage
from lab.scoring.report import render_html, render_text, to_json
from lab.scoring.score import score_scenario

CHECK_TIMEOUT = 20.0  # seconds for one fault's repair check


class Exercise:
    def __init__(self, scenario: Scenario, attempt: Attempt, healthy_ruleset: str) -> None:
        self.scenario = scenario
        self.attempt = attempt
        self.healthy_ruleset = healthy_ruleset
        self.scored = False

    @classmethod
    async def start(cls, lab: LabContext, lab_name: str, scenario_path: Path, seed: int,
                    forced: list[str | dict[str, Any]], trainee: str) -> Exercise:
        """Draw the faults from the seed (or apply ``forced`` ones: names, or mappings
        with ``fault`` and ``params``; their other params drawn too) and apply them."""
        scenario = load_scenario(scenario_path, set(CATALOG), CAUSE_IDS)
        refs = [FaultRef(fault=f) if isinstance(f, str) else FaultRef.model_validate(f)
                for f in forced]
        drawn, drawn_herrings = draw_faults(scenario, seed, lab.roles, refs or None)
        healthy = _ruleset(lab)
        faults = [await _apply(lab, d) for d in drawn]
        herrings = [await _apply(lab, d) for d in drawn_herrings]
        attempt = Attempt(scenario=scenario.name, lab=lab_name, seed=seed, trainee=trainee,
                          started=time.time(), ticket=scenario.ticket,
                          time_limit=scenario.time_limit, faults=faults, red_herrings=herrings)
        return cls(scenario, attempt, healthy)

    def applied_params(self, name: str) -> dict[str, Any] | None:
        """The params this attempt applied fault ``name`` with (None if it did not)."""
        for key in self.attempt.faults + self.attempt.red_herrings:
            if key.name == name:
                return dict(key.params)
        return None

    def ensure_open(self) -> Attempt:
        if self.scored:
            raise LabError("this attempt has been scored", hint="start a new one with `lab start`")
        return self.attempt

    def record(self, node: str, argv: list[str]) -> None:
        if not self.scored:
            self.attempt.record_command(node, argv)

    def ticket(self) -> dict[str, Any]:
        used = (time.time() - self.attempt.started) / 60
        return {"scenario": self.scenario.name, "title": self.scenario.title,
                "ticket": self.scenario.ticket, "time_limit": self.scenario.time_limit,
                "minutes_used": round(used, 1), "hints_left": self.hints_left()}

    def hints_left(self) -> int:
        return len(self.scenario.hints) - len(self.attempt.hints)

    def hint(self) -> dict[str, Any]:
        attempt = self.ensure_open()
        index = len(attempt.hints)
        if index >= len(self.scenario.hints):
            raise LabError("no more hints for this scenario")
        hint = self.scenario.hints[index]
        attempt.take_hint(index, hint.cost)
        return {"index": index + 1, "of": len(self.scenario.hints), "text": hint.text,
                "cost": hint.cost}

    def submit(self, cause: str, node: str, nodes: set[str]) -> dict[str, Any]:
        attempt = self.ensure_open()
        if node not in nodes:
            raise LabError(f"unknown node '{node}'", hint="nodes: " + ", ".join(sorted(nodes)))
        attempt.submit(cause, node)
        if any(f.cause == cause and f.node == node for f in attempt.faults):
            verdict = "right"
        elif any(f.cause == cause or f.node == node for f in attempt.faults):
            verdict = "partial"
        else:
            verdict = "wrong"
        found = {(f.cause, f.node) for f in attempt.faults} & {
            (s.cause, s.node) for s in attempt.submissions}
        return {"verdict": verdict, "faults": len(attempt.faults), "diagnosed": len(found)}

    async def score(self, lab: LabContext, probes: list[dict[str, Any]], results: Path
                    ) -> dict[str, Any]:
        attempt = self.ensure_open()
        attempt.finish()
        attempt.probes = {p["name"]: Probe(p["passed"], p["detail"]) for p in probes}
        attempt.repairs = list(await asyncio.gather(
            *(check_repair(lab, key) for key in attempt.faults + attempt.red_herrings)))
        causes = {f.cause for f in attempt.faults + attempt.red_herrings}
        attempt.damage = find_damage(self.healthy_ruleset, _ruleset(lab), causes)
        report = score_scenario(attempt, self.scenario)
        attempt.score = to_json(report)
        path = attempt.save(results)
        self.scored = True
        return {"text": render_text(report), "json": attempt.score,
                "html": render_html(report), "path": str(path)}


async def _apply(lab: LabContext, drawn: Drawn) -> FaultKey:
    await drawn.fault.apply(lab, drawn.params)
    key = drawn.fault.answer(drawn.params, lab.roles)
    return FaultKey(drawn.fault.name, drawn.params.model_dump(mode="json"), key.cause, key.node)


async def check_repair(lab: LabContext, key: FaultKey) -> RepairResult:
    """Is the fault's own symptom gone at the end of the attempt? A check that cannot
    run counts as not repaired, and says why."""
    fault = get_fault(key.name)
    try:
        params = fault.Params.model_validate(key.params)
        repair = await asyncio.wait_for(fault.check_repaired(lab, params), CHECK_TIMEOUT)
        repaired, how = repair.repaired, repair.how
    except TimeoutError:
        repaired, how = False, f"the check did not finish within {CHECK_TIMEOUT:.0f} s"
    except (LabError, OSError) as e:
        repaired, how = False, f"the check failed: {getattr(e, 'message', None) or e}"
    return RepairResult(key.name, key.cause, key.node, repaired, how)


def _ruleset(lab: LabContext) -> str:
    """The firewall's ruleset as nft lists it ("" when the topology has no firewall)."""
    node = lab.roles.firewall
    if node is None or node not in lab.topo.nodes:
        return ""
    rc, out, err = lab.run(node, ["nft", "list", "ruleset"], None)
    if rc != 0:
        raise LabError(f"cannot list the firewall's ruleset: {err.strip()}")
    return out
