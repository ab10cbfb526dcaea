"""One attempt at a scenario in a running lab, held by the lab's supervisor.

The answer key (which faults were applied, their causes and nodes) lives only in this
process's memory until `lab score` writes the attempt record to the results directory,
which nodes cannot see (docs/design.md, rule 4).
"""
from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lab.errors import LabError
from lab.faults import CATALOG, get_fault
from lab.faults.base import LabContext
from lab.faults.draw import Drawn, draw_faults
from lab.model.scenario import FaultRef, Scenario, load_scenario
from lab.scoring.addresses import address_map
from lab.scoring.attempt import Attempt, FaultKey, Probe, RepairResult
from lab.scoring.causes import CAUSE_IDS
from lab.scoring.damage import LabState, find_damage
from lab.scoring.report import render_html, render_text, to_json
from lab.scoring.score import grade, score_scenario

if TYPE_CHECKING:
    from lab.history.replay import LabHistory, Replayed

# services whose state the firewall's ruleset already tells (a flushed ruleset is one
# damage, not also "the firewall service stopped")
JUDGED_BY_RULESET = {"firewall"}
SETTLE = 2.0  # seconds a service may take to answer its health check again at scoring
CHECK_TIMEOUT = 20.0  # seconds for one fault's repair check


class Exercise:
    def __init__(self, scenario: Scenario, attempt: Attempt, healthy: LabState,
                 faulted: LabState) -> None:
        self.scenario = scenario
        self.attempt = attempt
        self.healthy = healthy  # before the faults: the healthy policy
        self.faulted = faulted  # right after the faults: where the trainee started
        self.replayed: Replayed | None = None  # what the history replay did
        self.scored = False

    @classmethod
    async def start(cls, lab: LabContext, lab_name: str, scenario_path: Path, seed: int,
                    forced: list[str | dict[str, Any]], trainee: str,
                    history: LabHistory | None = None) -> Exercise:
        """Draw the faults from the seed (or apply ``forced`` ones: names, or mappings
        with ``fault`` and ``params``; their other params drawn too) and apply them, at
        the start of the scenario's history window; then replay the window (the lab's
        traffic under the faults) up to now."""
        scenario = load_scenario(scenario_path, set(CATALOG), CAUSE_IDS)
        refs = [FaultRef(fault=f) if isinstance(f, str) else FaultRef.model_validate(f)
                for f in forced]
        drawn, drawn_herrings = draw_faults(scenario, seed, lab.roles, refs or None)
        healthy = await snapshot(lab)
        if history is not None:
            await history.lead_in(scenario.history.seconds(), f"{scenario.name}:{seed}")
        faults = [await _apply(lab, d) for d in drawn]
        herrings = [await _apply(lab, d) for d in drawn_herrings]
        faulted = await snapshot(lab)
        replayed = await history.replay() if history is not None else None
        attempt = Attempt(scenario=scenario.name, lab=lab_name, seed=seed, trainee=trainee,
                          started=time.time(), ticket=scenario.ticket,
                          time_limit=scenario.time_limit, faults=faults, red_herrings=herrings,
                          addresses=address_map(lab.topo))
        exercise = cls(scenario, attempt, healthy, faulted)
        exercise.replayed = replayed
        return exercise

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

    def record(self, node: str, argv: list[str], line: str | None = None) -> None:
        if not self.scored:
            self.attempt.record_command(node, argv, line=line)

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
        """Record a diagnosis. The answer says "recorded" and nothing more, unless the
        scenario chose ``feedback: immediate``: then right or wrong, never "partly"."""
        attempt = self.ensure_open()
        if node not in nodes:
            raise LabError(f"unknown node '{node}'", hint="nodes: " + ", ".join(sorted(nodes)))
        sub = attempt.submit(cause, node)
        out: dict[str, Any] = {"recorded": True, "feedback": self.scenario.feedback}
        if self.scenario.feedback == "immediate":
            out["right"] = any(grade(f, sub, self.scenario.accept)[0] == "right"
                               for f in attempt.faults)
        return out

    async def score(self, lab: LabContext, probes: list[dict[str, Any]], results: Path
                    ) -> dict[str, Any]:
        attempt = self.ensure_open()
        attempt.finish()
        attempt.probes = {p["name"]: Probe(p["passed"], p["detail"]) for p in probes}
        attempt.repairs = list(await asyncio.gather(
            *(check_repair(lab, key) for key in attempt.faults + attempt.red_herrings)))
        now = await snapshot(lab, settle=SETTLE)
        attempt.damage = find_damage(self.healthy, self.faulted, now, lab.roles.firewall)
        report = score_scenario(attempt, self.scenario)
        attempt.score = to_json(report)
        path = attempt.save(results)
        self.scored = True
        return {"text": render_text(report), "json": attempt.score,
                "html": render_html(report), "path": str(path)}


async def snapshot(lab: LabContext, settle: float = 0.0) -> LabState:
    """What damage compares: the firewall's ruleset and whether each service answers. With
    ``settle``, a service that does not answer is asked again for up to that long (a
    health check can miss under load; a stopped service stays silent)."""
    names = [(node, kind) for node, spec in lab.topo.nodes.items() for kind in spec.services
             if kind not in JUDGED_BY_RULESET]
    states = await asyncio.gather(*(lab.service(n, k).healthy() for n, k in names))
    deadline = time.monotonic() + settle
    while not all(states) and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
        states = [ok or await lab.service(n, k).healthy() for (n, k), ok in zip(names, states)]
    return LabState(_ruleset(lab), {f"{n}/{k}": ok for (n, k), ok in zip(names, states)})


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
