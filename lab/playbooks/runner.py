"""Running a playbook in a lab as an automated trainee: each step through the trainee's exec
path (lab.engine.nodeexec.run, recorded in the attempt), facts from the outputs, the first
matching conclusion submitted and the attempt scored by the same supervisor ops as
`lab submit` and `lab score`."""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from lab.engine import control, nodeexec
from lab.errors import LabError
from lab.model.playbook import ROLE_PREFIX, UNTIL_EVERY, UNTIL_WITHIN, Playbook, Step
from lab.playbooks import conditions
from lab.playbooks.hooks import HookContext, get_hook, load_hook_modules, parse_probe, probe_argv

PROBE_SLACK = 5.0  # the interpreter's start inside the node, on top of the probe's own time
PROBE_WAIT = 3.0  # how long a probe waits for an answer unless the step sets a timeout
OUTPUT_FACT_CHARS = 4000  # `<id>.output` holds at most this much of a step's text


@dataclass
class StepResult:
    id: str
    node: str
    action: str
    commands: list[list[str]] = field(default_factory=list)
    rc: int | None = None
    stdout: str = ""
    stderr: str = ""
    facts: dict[str, Any] = field(default_factory=dict)
    skipped: str = ""  # why the step did not run
    seconds: float = 0.0


@dataclass
class PlaybookResult:
    playbook: str
    lab: str
    steps: list[StepResult] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)
    conclusion: dict[str, Any] | None = None  # {index, cause, node, because}
    submission: dict[str, Any] | None = None  # the submit answer, plus the scored verdict
    score: dict[str, Any] | None = None  # the score report (JSON form)
    score_text: str = ""
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def lab_roles(lab: str) -> dict[str, str]:
    """The roles of the lab's topology as it was built (variant and overrides included),
    as ``roles.NAME`` -> text: what ``${roles.NAME}`` in a playbook stands for."""
    from lab.engine.state import lab_dir
    from lab.model.roles import derive_roles
    from lab.model.topology import load_topology

    return derive_roles(load_topology(lab_dir(lab) / "topology.yaml")).vars()


def _skip_reason(step: Step, facts: conditions.Facts) -> str:
    """Why the step does not run ("" if it does): a reference of its node, action or args
    that is missing (a fact regex's only leaves that fact unset), or its conditions."""
    missing = [name for loc, name in step.references(()) if name not in facts
               and loc[:1] != ("facts",)]
    if missing:
        what = "role" if missing[0].startswith(ROLE_PREFIX) else "fact"
        return (f"{what} {missing[0].removeprefix(ROLE_PREFIX)} is missing (needed by the "
                "step)")
    if step.when is not None and not conditions.holds(step.when, facts):
        return f"when {conditions.describe(step.when)} does not hold"
    if step.skip_when is not None and conditions.holds(step.skip_when, facts):
        return f"skip_when {conditions.describe(step.skip_when)} holds"
    return ""


def _flatten(step_id: str, values: dict[str, Any]) -> dict[str, Any]:
    return {f"{step_id}.{k}": v for k, v in values.items()
            if isinstance(v, (str, int, float, bool))}


def probe_args(step: Step) -> dict[str, Any]:
    """A probe's arguments; its own wait is the step's timeout when set, else PROBE_WAIT."""
    args = getattr(step, step.action).model_dump()
    args["timeout"] = step.timeout if "timeout" in step.model_fields_set else PROBE_WAIT
    return args


def run_step(lab: str, step: Step, facts: conditions.Facts | None = None) -> StepResult:
    """Run one step in its node (``${fact}`` and ``${roles.NAME}`` references filled in
    from ``facts``); its rc, output and facts."""
    facts = facts or {}
    node = conditions.interpolate(step.node, facts)
    res = StepResult(step.id, node, step.action)
    started = time.monotonic()
    if step.action == "hook":
        assert step.hook is not None
        ctx = HookContext(lab, node, step.timeout)
        out = get_hook(step.hook)(ctx, **conditions.interpolate(step.args, facts))
        res.commands, res.rc, res.stdout = ctx.commands, out.rc, out.output
        res.facts = _flatten(step.id, out.facts)
        res.facts[f"{step.id}.output"] = res.stdout[:OUTPUT_FACT_CHARS]
    elif step.action == "run":
        assert step.run is not None
        argv = conditions.interpolate(list(step.run), facts)
        res.commands = [argv]
        p = nodeexec.run(lab, node, argv, step.timeout, step.stdin)
        res.rc, res.stdout, res.stderr = p.returncode, p.stdout, p.stderr
        res.facts[f"{step.id}.output"] = res.stdout[:OUTPUT_FACT_CHARS]
    else:
        argv = probe_argv(step.action, conditions.interpolate(probe_args(step), facts))
        res.commands = [argv]
        p = nodeexec.run(lab, node, argv, step.timeout + PROBE_SLACK)
        res.rc, res.stdout, res.stderr = p.returncode, p.stdout, p.stderr
        res.facts = _flatten(step.id, parse_probe(p.stdout, p.returncode, p.stderr))
    res.facts[f"{step.id}.rc"] = res.rc
    for name, spec in step.facts.items():
        text = res.stderr if spec.from_ == "stderr" else res.stdout
        try:
            regex = conditions.interpolate(spec.regex, facts, escape=True)
        except conditions.MissingFact:
            continue  # the fact is about a role (or fact) this lab does not have
        value = conditions.extract(regex, spec.group, text)
        if value is not None:
            res.facts[name] = value
    res.seconds = round(time.monotonic() - started, 3)
    return res


def run_until(lab: str, step: Step, facts: conditions.Facts,
              sleep: Callable[[float], None] = time.sleep) -> StepResult:
    """Run a step again and again until its ``until`` holds (on earlier facts and the
    run's own), every ``every`` s, giving up after ``within`` s; the last run's result
    with ``<id>.held``, ``<id>.waited`` (s) and ``<id>.tries``."""
    assert step.until is not None
    every = step.every if step.every is not None else UNTIL_EVERY
    within = step.within if step.within is not None else UNTIL_WITHIN
    started = time.monotonic()
    tries = 0
    while True:
        res = run_step(lab, step, facts)
        tries += 1
        held = conditions.holds(step.until, {**facts, **res.facts})
        left = within - (time.monotonic() - started)
        if held or left <= 0:
            break
        sleep(min(every, left))
    res.facts.update({f"{step.id}.held": held, f"{step.id}.tries": tries,
                      f"{step.id}.waited": round(time.monotonic() - started, 1)})
    res.seconds = round(time.monotonic() - started, 3)
    return res


def investigate(lab: str, playbook: Playbook,
                on_step: Callable[[StepResult], None] | None = None,
                roles: dict[str, str] | None = None) -> PlaybookResult:
    """Run the steps (skipping those whose conditions say so, or that need a role the
    lab's topology lacks) and pick the conclusion. ``roles``: the lab's, as
    ``roles.NAME`` -> text (default: read from the lab)."""
    load_hook_modules(playbook.hooks)
    started = time.monotonic()
    result = PlaybookResult(playbook.name, lab)
    roles = lab_roles(lab) if roles is None else roles
    for step in playbook.steps:
        scope = {**roles, **result.facts}
        reason = _skip_reason(step, scope)
        run = run_until if step.until is not None else run_step
        res = StepResult(step.id, conditions.expand(step.node, scope), step.action,
                         skipped=reason) if reason else run(lab, step, scope)
        result.facts.update(res.facts)
        result.steps.append(res)
        if on_step is not None:
            on_step(res)
    scope = {**roles, **result.facts}
    found = conditions.conclude(list(playbook.conclusions), scope)
    if found is not None:
        index, c = found
        result.conclusion = {"index": index, "cause": c.cause,
                             "node": conditions.interpolate(c.node, scope),
                             "because": conditions.expand(c.because, scope)}
    result.seconds = round(time.monotonic() - started, 3)
    return result


def run_playbook(lab: str, playbook: Playbook, results: Path | None = None,
                 on_step: Callable[[StepResult], None] | None = None) -> PlaybookResult:
    """Investigate, submit the conclusion (none: nothing is submitted) and score the
    attempt, exactly as `lab submit` and `lab score` do for a trainee."""
    from lab.engine.state import results_root

    result = investigate(lab, playbook, on_step)
    if result.conclusion is not None:
        result.submission = control.request(lab, "submit", cause=result.conclusion["cause"],
                                            node=result.conclusion["node"])
    directory = results or results_root()
    directory.mkdir(parents=True, exist_ok=True)
    scored = control.request(lab, "score", timeout=120, results=str(directory.resolve()))
    if not isinstance(scored, dict) or "json" not in scored:
        raise LabError(f"lab {lab}: the score came back without a report")
    result.score, result.score_text = scored["json"], scored["text"]
    if result.submission is not None and result.conclusion is not None:
        # `lab submit` only says "recorded": the verdict comes from the score report
        result.submission["verdict"] = scored_verdict(result.score, result.conclusion)
    return result


def scored_verdict(score: dict[str, Any], conclusion: dict[str, Any]) -> str:
    """How the score report judged the submitted conclusion: right, partial or wrong."""
    for v in score.get("verdicts", []):
        sub = v.get("submission") or {}
        if (sub.get("cause"), sub.get("node")) == (conclusion["cause"], conclusion["node"]):
            return v["verdict"] if v["verdict"] in ("right", "partial") else "wrong"
    return "wrong"
