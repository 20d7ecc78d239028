"""`mesh --help` wall time: what every command pays before it does anything.

Median of 10 runs of the installed `mesh` script (or `python -m mesh` where there is none),
beside the bare interpreter start (`python -c pass`) measured in the same run, which is the
floor no import work can go below. Target (issue 12): <= 0.5 s.

Run: python -m benchmarks.cli_start [--quick]
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from benchmarks.harness import versions
from benchmarks.stats import Row, suite_arguments, write_rows

RUNS = 10
TARGET_S = 0.5


def mesh_script() -> list[str]:
    script = Path(sys.executable).parent / "mesh"
    return [str(script)] if script.exists() else [sys.executable, "-m", "mesh"]


def wall_s(command: Sequence[str]) -> float:
    start = time.perf_counter()
    subprocess.run(list(command), stdout=subprocess.DEVNULL, check=True, timeout=60)
    return time.perf_counter() - start


def measure(runs: int) -> tuple[float, float]:
    """Median wall seconds of `mesh --help` and of `python -c pass`, runs interleaved."""
    mesh, bare = [], []
    for _ in range(runs):
        mesh.append(wall_s([*mesh_script(), "--help"]))
        bare.append(wall_s([sys.executable, "-c", "pass"]))
    return statistics.median(mesh), statistics.median(bare)


def main(argv: list[str] | None = None) -> int:
    args = suite_arguments(__doc__).parse_args(argv)
    print(versions())
    mesh, bare = measure(RUNS)  # 10 runs is already quick: --quick changes nothing here
    print(f"`{' '.join(mesh_script())} --help`: {mesh:.3f} s median of {RUNS}")
    print(f"`python -c pass` (interpreter floor): {bare:.3f} s")
    measured = f"{mesh:.2f} s (python alone {bare:.2f} s)"
    row = Row("`mesh --help` wall time", measured, mesh, TARGET_S, "<=", "s")
    write_rows([row], args.rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
