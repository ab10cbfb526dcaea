"""Reading input files with the bounded loader: the shipped files (what every `lab` command
pays) and the worst files the issue found (alias bomb, deep nesting, near 1 MB), in CPU
seconds and peak memory.

    .venv/bin/python bench/input_bench.py [--runs 5]

Baseline, measured in the same run: PyYAML's own unbounded ``yaml.load(CSafeLoader)`` of
the same text (data only, no line numbers, no checks), where it finishes at all; the ratio
is what line numbers, limits and the checks cost. Files the baseline cannot read in
reasonable time and memory (the bomb, 100,000 nested brackets) show "-".
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import tracemalloc
from pathlib import Path

import labcli  # noqa: F401 - puts the project on sys.path
import yaml

from lab.model.source import FileError, read_yaml

ROOT = Path(__file__).resolve().parents[1]


def alias_bomb(levels: int = 10) -> str:
    text = 'a0: &a0 ["x", "x", "x", "x", "x", "x", "x", "x", "x", "x"]\n'
    for i in range(1, levels):
        text += f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]\n"
    return text


def cases() -> dict[str, tuple[str, bool]]:
    """name -> (text, whether the unbounded baseline can read it)."""
    shipped = {p.relative_to(ROOT).as_posix(): (p.read_text(), True)
               for d in ("topologies", "scenarios", "playbooks")
               for p in sorted((ROOT / d).glob("*.yaml"))[:1]}
    rows = "".join(f"  k{i}: {{x: [1, 2, 3], y: 'hello world', z: {{q: 1}}}}\n"
                   for i in range(16_000))
    return {**shipped,
            "near 1 MB of mappings (refused: values)": ("a:\n" + rows, True),
            "40,000 values (accepted)": ("a: [" + ",".join(["1"] * 39_000) + "]\n", True),
            "ten-level alias bomb (refused)": (alias_bomb(), False),
            "100,000 nested brackets (refused)": ("a: " + "[" * 100_000 + "]" * 100_000,
                                                  False)}


def cpu(fn, runs: int) -> float:
    times = []
    for _ in range(runs):
        started = time.process_time()
        fn()
        times.append(time.process_time() - started)
    return statistics.median(times)


def peak_mb(fn) -> float:
    tracemalloc.start()
    try:
        fn()
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return peak / 2**20


def bounded(path: Path):
    def read() -> None:
        try:
            read_yaml(path)
        except FileError:
            pass
    return read


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    print(f"{'file':<42} {'bytes':>8} {'bounded s':>10} {'MB':>6} {'baseline s':>10} "
          f"{'ratio':>6}")
    with tempfile.TemporaryDirectory(prefix="hd-input-bench-") as tmp:
        for name, (text, baseline_ok) in cases().items():
            path = Path(tmp) / "case.yaml"
            path.write_text(text)
            ours = cpu(bounded(path), args.runs)
            mem = peak_mb(bounded(path))
            base = (cpu(lambda text=text: yaml.load(text, Loader=yaml.CSafeLoader), args.runs)
                    if baseline_ok else None)
            ratio = f"{ours / base:6.2f}" if base else f"{'-':>6}"
            base_s = f"{base:10.4f}" if base else f"{'-':>10}"
            print(f"{name:<42} {len(text.encode()):>8} {ours:10.4f} {mem:6.1f} {base_s} {ratio}")


if __name__ == "__main__":
    main()
