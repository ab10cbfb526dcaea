"""Who is running `lab`, and the way to their lab's supervisor.

The instructor is root on the host: every verb, through the root-only control socket.
Anyone else is a trainee: a Unix user without root on the host, or whoever is inside a
node of a lab (root there is not root here). Trainees get only the trainee verbs,
through the trainee channel (lab.engine.channel), on the labs bound to them.
"""
from __future__ import annotations

import os
from typing import Any

from lab.engine import channel
from lab.errors import LabError

# the `lab` commands a trainee may run (the CLI's names; `lab causes` needs no lab)
TRAINEE_COMMANDS = ("ls", "ticket", "hint", "causes", "shell", "exec", "submit", "score",
                    "verify", "service")
# anyone may run these: they read files the caller names and touch no lab
OPEN_COMMANDS = ("validate",)


def is_instructor() -> bool:
    return os.geteuid() == 0 and not channel.in_node()


def require_instructor(command: str) -> None:
    if not is_instructor():
        raise LabError(f"`lab {command}` is for instructors (root on the host)",
                       hint="a trainee can run: lab " + ", ".join(TRAINEE_COMMANDS))


def hello(lab: str) -> dict[str, Any]:
    return channel.request(lab, "hello")


def my_labs() -> list[str]:
    """The running labs whose attempt is bound to this user."""
    mine = []
    for lab in channel.labs():
        try:
            if hello(lab)["yours"]:
                mine.append(lab)
        except LabError:
            continue  # going down as we ask
    return mine


def trainee_lab(lab: str | None) -> str | None:
    """The lab a trainee's command is about: inside a node, the node's own (None); else
    the one named, or the only one of theirs running."""
    if channel.in_node():
        return None
    if lab is not None:
        return lab
    mine = my_labs()
    if not mine:
        raise LabError("no lab of yours is running",
                       hint="your instructor starts one with `lab start SCENARIO --trainee USER`")
    if len(mine) > 1:
        raise LabError(f"{len(mine)} labs of yours are running: {', '.join(mine)}",
                       hint="name one with --lab NAME")
    return mine[0]


def ask(lab: str | None, op: str, timeout: float = 30.0, **args: Any) -> Any:
    """One request to the supervisor of a lab, as the caller may make it."""
    if is_instructor():
        from lab.engine import control, lifecycle

        return control.request(lifecycle.pick_lab(lab), op, timeout=timeout, **args)
    return channel.request(trainee_lab(lab), op, **args)
