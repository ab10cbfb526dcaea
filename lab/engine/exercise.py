"""One attempt at a scenario in a running lab, held by the lab's supervisor.

The answer key (which faults were applied, their causes and nodes) lives only in this
process's memory until `lab score` writes the attempt record to the results directory,
which nodes cannot see (DESIGN.md rule 4).
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from lab.errors import LabError
from lab.faults import CATALOG, get_fault
from lab.faults.base import LabContext
from lab.model.scenario import Scenario, draw_faults, load_scenario
from lab.scoring.attempt import Attempt, FaultKey, Probe
from lab.scoring.damage import find_damage
from lab.scoring.report import render_html, render_text, to_json
from lab.scoring.score import score_scenario

RULESET_NODE = "fw"


class Exercise:
    def __init__(self, scenario: Scenario, attempt: Attempt, healthy_ruleset: str) -> None:
        self.scenario = scenario
        self.attempt = attempt
        self.healthy_ruleset = healthy_ruleset
        self.scored = False

    @classmethod
    async def start(cls, lab: LabContext, lab_name: str, scenario_path: Path, seed: int,
                    forced: list, trainee: str) -> Exercise:
        scenario = load_scenario(scenario_path, set(CATALOG))
        if forced:  # names, or {"fault": NAME, "params": {...}} (`lab start --fault N:k=v`)
            refs = [(f, {}) if isinstance(f, str) else (f["fault"], f.get("params") or {})
                    for f in forced]
        else:
            refs = [(ref.fault, ref.params) for ref in draw_faults(scenario, seed)]
        healthy = _ruleset(lab)
        faults = [await _apply(lab, name, params) for name, params in refs]
        herrings = [await _apply(lab, ref.fault, ref.params) for ref in scenario.red_herrings]
        attempt = Attempt(scenario=scenario.name, lab=lab_name, seed=seed, trainee=trainee,
                          started=time.time(), ticket=scenario.ticket,
                          time_limit=scenario.time_limit, faults=faults, red_herrings=herrings)
        return cls(scenario, attempt, healthy)

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

    def score(self, lab: LabContext, probes: list[dict[str, Any]], results: Path
              ) -> dict[str, Any]:
        attempt = self.ensure_open()
        attempt.finish()
        attempt.probes = {p["name"]: Probe(p["passed"], p["detail"]) for p in probes}
        causes = {f.cause for f in attempt.faults + attempt.red_herrings}
        attempt.damage = find_damage(self.healthy_ruleset, _ruleset(lab), causes)
        report = score_scenario(attempt, self.scenario)
        attempt.score = to_json(report)
        path = attempt.save(results)
        self.scored = True
        return {"text": render_text(report), "json": attempt.score,
                "html": render_html(report), "path": str(path)}


async def _apply(lab: LabContext, name: str, params: dict[str, Any]) -> FaultKey:
    fault = get_fault(name)
    parsed = fault.Params.model_validate(params)
    await fault.apply(lab, parsed)
    key = fault.answer(parsed)
    return FaultKey(name, parsed.model_dump(mode="json"), key.cause, key.node)


def _ruleset(lab: LabContext) -> str:
    if RULESET_NODE not in lab.topo.nodes:
        return ""
    rc, out, err = lab.run(RULESET_NODE, ["nft", "list", "ruleset"], None)
    if rc != 0:
        raise LabError(f"cannot list the firewall's ruleset: {err.strip()}")
    return out
