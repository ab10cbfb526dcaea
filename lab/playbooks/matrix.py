"""The regression matrix: every (playbook, scenario, seed) in a lab of its own, in parallel
up to ``jobs``; each lab is down again before its job ends, also on an error or Ctrl-C."""
from __future__ import annotations

import itertools
import os
import threading
import time
import traceback
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lab.engine import lifecycle
from lab.engine.attempt import attempt_lab
from lab.errors import LabError
from lab.model.playbook import Playbook, load_playbook
from lab.model.scenario import Scenario
from lab.paths import PLAYBOOK_DIR
from lab.playbooks.runner import PlaybookResult, StepResult, run_playbook

# a run mostly waits (the replay's idle clock steps, a probe's answer): on a 2-core machine
# 4 jobs kept the cores 57 % busy, and 75 runs took 119 s with 4 jobs, 90 s with 8, 79 s
# with 12 and 89 s with 16 (bench/matrix_bench.py); a lab takes some 25 to 40 MB
JOBS_PER_CORE, MAX_JOBS = 6, 48
DEFAULT_JOBS = min(MAX_JOBS, JOBS_PER_CORE * (os.cpu_count() or 1))


class Cancelled(LabError):
    def __init__(self) -> None:
        super().__init__("cancelled")


def load_playbook_ref(ref: str) -> tuple[Path, Playbook]:
    from lab.scoring.causes import CAUSE_IDS

    path = lifecycle.resolve_file(ref, PLAYBOOK_DIR, "playbook")
    return path, load_playbook(path, CAUSE_IDS)


@dataclass
class Outcome:
    """One (playbook, scenario, seed) run and what it came to."""

    playbook: str
    scenario: str
    seed: int
    lab: str
    expected: bool
    injected: list[tuple[str, str]] = field(default_factory=list)  # (cause, node)
    concluded: tuple[str, str] | None = None
    verdict: str = "error"  # right, partial, wrong, none (no conclusion), error
    error: str = ""
    seconds: float = 0.0
    result: PlaybookResult | None = None

    @property
    def passed(self) -> bool:
        return self.verdict == "right"

    @property
    def missed(self) -> bool:
        """An expected diagnosis that did not come (a wrong one, none, or an error)."""
        return self.expected and not self.passed

    def to_dict(self) -> dict[str, Any]:
        return {"playbook": self.playbook, "scenario": self.scenario, "seed": self.seed,
                "lab": self.lab, "expected": self.expected,
                "injected": [list(i) for i in self.injected],
                "concluded": list(self.concluded) if self.concluded else None,
                "verdict": self.verdict, "passed": self.passed, "missed": self.missed,
                "error": self.error, "seconds": self.seconds,
                "result": self.result.to_dict() if self.result else None}


@dataclass
class Job:
    playbook: Playbook
    scenario_path: Path
    scenario: Scenario
    seed: int

    @property
    def expected(self) -> bool:
        return self.playbook.name in self.scenario.expect_playbooks


def outcome_of(job: Job, lab: str, result: PlaybookResult) -> Outcome:
    out = Outcome(job.playbook.name, job.scenario.name, job.seed, lab, job.expected,
                  result=result, seconds=result.seconds)
    verdicts = (result.score or {}).get("verdicts", [])
    out.injected = [(v["cause"], v["node"]) for v in verdicts]
    if result.conclusion is None:
        out.verdict = "none"
    else:
        out.concluded = (result.conclusion["cause"], result.conclusion["node"])
        out.verdict = (result.submission or {}).get("verdict", "wrong")
    return out


class Matrix:
    """Runs the jobs; ``on_event(kind, job, data)`` reports progress ("start", "step",
    "done") from the worker threads, for the caller to render."""

    def __init__(self, jobs: list[Job], parallel: int = DEFAULT_JOBS,
                 results: Path | None = None,
                 on_event: Callable[[str, Job, Any], None] | None = None,
                 lab_prefix: str | None = None) -> None:
        self.jobs = jobs
        self.lab_prefix = lab_prefix or f"pb-{os.getpid()}"
        self.parallel = max(1, parallel)
        self.results = results
        self.on_event = on_event or (lambda *_: None)
        self.stop = threading.Event()
        self._names = itertools.count(1)
        self._lock = threading.Lock()

    def _lab_name(self) -> str:
        with self._lock:
            return f"{self.lab_prefix}-{next(self._names)}"

    def run_one(self, job: Job) -> Outcome:
        lab = self._lab_name()
        started = time.monotonic()
        if self.stop.is_set():
            return Outcome(job.playbook.name, job.scenario.name, job.seed, lab, job.expected,
                           error="cancelled")
        self.on_event("start", job, lab)

        def on_step(step: StepResult) -> None:
            self.on_event("step", job, step)
            if self.stop.is_set():
                raise Cancelled()

        try:
            with attempt_lab(job.scenario_path, job.scenario, lab, job.seed):
                result = run_playbook(lab, job.playbook, self.results, on_step)
            out = outcome_of(job, lab, result)
        except LabError as e:
            out = Outcome(job.playbook.name, job.scenario.name, job.seed, lab, job.expected,
                          error=e.message)
        except Exception as e:  # noqa: BLE001 - one broken run must not hide the others
            out = Outcome(job.playbook.name, job.scenario.name, job.seed, lab, job.expected,
                          error=f"{type(e).__name__}: {e}\n{traceback.format_exc()}")
        out.seconds = round(time.monotonic() - started, 3)
        self.on_event("done", job, out)
        return out

    def run(self) -> list[Outcome]:
        """Every job's outcome in job order. On Ctrl-C (or any error here) no new lab
        starts, running playbooks stop at their next step, and each lab goes down."""
        outcomes: dict[int, Outcome] = {}
        pool = ThreadPoolExecutor(self.parallel, thread_name_prefix="playbook")
        try:
            futures = {pool.submit(self.run_one, job): i for i, job in enumerate(self.jobs)}
            for f in as_completed(futures):
                outcomes[futures[f]] = f.result()
        except BaseException:
            self.stop.set()
            raise
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
        return [outcomes[i] for i in range(len(self.jobs))]


def plan(playbooks: list[Playbook], scenarios: list[tuple[Path, Scenario]],
         seeds: list[int], skipped: list[tuple[str, str]] | None = None) -> list[Job]:
    """Every (playbook, scenario, seed) whose playbook runs on the scenario's topology;
    the pairs left out go to ``skipped`` as (playbook, scenario)."""
    jobs = []
    for path, sc in scenarios:
        roles = scenario_roles(sc)
        for pb in playbooks:
            if pb.runs_on(sc.topology, roles):
                jobs += [Job(pb, path, sc, seed) for seed in seeds]
            elif skipped is not None:
                skipped.append((pb.name, sc.name))
    return jobs


def scenario_roles(scenario: Scenario):
    """The roles of the topology a scenario builds (its variant and overrides laid over)."""
    from lab.model.roles import derive_roles
    from lab.model.topology import load_topology

    topo = load_topology(lifecycle.resolve_topology(scenario.topology), scenario.variant,
                         scenario.overrides or None)
    return derive_roles(topo)
