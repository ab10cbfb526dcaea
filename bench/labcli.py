"""What every benchmark shares: the project's `lab` command, run as a user runs it."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
if str(PROJECT_ROOT) not in sys.path:
    sys.path.insert(0, str(PROJECT_ROOT))

_VENV_LAB = Path(sys.executable).with_name("lab")
LAB_CMD = [str(_VENV_LAB)] if _VENV_LAB.exists() else [sys.executable, "-m", "lab.cli"]


def run_lab(*args: str, timeout: float = 120, env: dict[str, str] | None = None
            ) -> subprocess.CompletedProcess:
    """Run `lab ARGS...` from the project root; text output, never raises on failure."""
    return subprocess.run([*LAB_CMD, *args], capture_output=True, text=True, cwd=PROJECT_ROOT,
                          timeout=timeout, check=False, env=env)


def timed_lab(*args: str, timeout: float = 120, check: bool = True,
              env: dict[str, str] | None = None) -> tuple[float, subprocess.CompletedProcess]:
    """Wall time of `lab ARGS...` (the CLI process, start to exit) and its result."""
    started = time.perf_counter()
    p = run_lab(*args, timeout=timeout, env=env)
    took = time.perf_counter() - started
    if check and p.returncode != 0:
        raise RuntimeError(f"lab {' '.join(args)} failed: {p.stderr.strip()}")
    return took, p


def load_average() -> str:
    """The machine's load average (1, 5, 15 min): every figure is quoted with it."""
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def topology_path(ref: str) -> Path:
    from lab.engine.lifecycle import resolve_topology

    return resolve_topology(ref)


def lab_pids(name: str) -> set[int]:
    """The processes of lab ``name``: its supervisor and every process it started carry
    LAB_INSTANCE=<name> in their environment."""
    marker = f"LAB_INSTANCE={name}".encode()
    pids = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            env = Path(f"/proc/{entry}/environ").read_bytes()
        except OSError:
            continue
        if marker in env.split(b"\0"):
            pids.add(int(entry))
    return pids
