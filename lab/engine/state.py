"""Where a lab's state lives and what it records, so that `lab clean` can work from it.

Each lab has a root-only directory ``<root>/<lab>/`` holding ``state.json`` (what the lab
created: supervisor, node shells, their namespaces, processes), the control socket, the
supervisor's log, the topology it was built from, and ``nodes/<node>/`` (each node's
private /etc layer and /var/{mail,spool,log}).
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

from lab.errors import LabError

LAB_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,31}$")
OWNER_ENV = "LAB_INSTANCE"  # every process a lab starts carries OWNER_ENV=<lab name>
# the command path of everything a lab runs (not the caller's)
NODE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def state_root() -> Path:
    return Path(os.environ.get("LAB_STATE_ROOT", "/run/lab"))


def results_root() -> Path:
    """Where `lab score` keeps attempt records (they hold answer keys: hidden in nodes)."""
    return Path(os.environ.get("LAB_RESULTS", "/var/lib/lab/results"))


def lab_dir(lab: str) -> Path:
    return state_root() / lab


def check_lab_name(lab: str) -> str:
    if not isinstance(lab, str) or not LAB_NAME.fullmatch(lab):
        raise LabError(
            f"invalid lab name {lab!r}",
            hint="use lowercase letters, digits and '-', at most 32 characters",
        )
    return lab


def proc_start_time(pid: int) -> int | None:
    """The kernel's start time of a live process (clock ticks since boot), None if it is
    gone or a zombie.

    A PID plus its start time names one process for good, even after PID reuse.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    if fields[0] in ("Z", "X"):
        return None
    return int(fields[19])


@dataclass
class ProcRef:
    pid: int
    start: int

    @classmethod
    def of(cls, pid: int) -> ProcRef:
        start = proc_start_time(pid)
        if start is None:
            raise LabError(f"process {pid} vanished while the lab was starting")
        return cls(pid, start)

    def alive(self) -> bool:
        return proc_start_time(self.pid) == self.start


@dataclass
class NodeRecord:
    pid: int
    start: int
    netns: int
    mntns: int
    kind: str  # "host" or "switch"
    cookie: int = 0  # the netns cookie: identifies the namespace even after a crash
    init: int = 0  # a host node's sealed init (lab.engine.seal): what people's commands join
    init_start: int = 0

    @property
    def proc(self) -> ProcRef:
        return ProcRef(self.pid, self.start)

    @property
    def init_proc(self) -> ProcRef:
        return ProcRef(self.init, self.init_start)


@dataclass
class LabState:
    lab: str
    topology: str
    source: str
    created: float
    supervisor: ProcRef
    nodes: dict[str, NodeRecord] = field(default_factory=dict)
    processes: list[dict] = field(default_factory=list)

    @property
    def directory(self) -> Path:
        return lab_dir(self.lab)

    def save(self) -> None:
        path = self.directory / "state.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=1))
        os.replace(tmp, path)

    @classmethod
    def load(cls, lab: str) -> LabState:
        path = lab_dir(lab) / "state.json"
        try:
            raw = json.loads(path.read_text())
        except FileNotFoundError:
            raise LabError(f"unknown lab '{lab}'", hint="`lab ls` lists running labs") from None
        except (OSError, ValueError) as e:
            raise LabError(f"unreadable state for lab '{lab}': {e}",
                           hint="`lab clean` removes what it left") from None
        return cls(
            lab=raw["lab"],
            topology=raw["topology"],
            source=raw["source"],
            created=raw["created"],
            supervisor=ProcRef(**raw["supervisor"]),
            nodes={k: NodeRecord(**v) for k, v in raw["nodes"].items()},
            processes=raw.get("processes", []),
        )


def lab_names() -> list[str]:
    """Every lab with a state directory, running or not."""
    root = state_root()
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if p.is_dir() and LAB_NAME.fullmatch(p.name))
