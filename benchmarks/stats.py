"""Pure helpers of the benchmarks: round statistics, run plans, summary rows and their table.

No servers, no clocks: unit-tested on their own (tests/unit/test_bench_harness.py).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal


@dataclass(frozen=True)
class Plan:
    """How much to measure: a full run, or a quick smoke run (fewer, shorter rounds)."""

    # Many short rounds: on a shared machine the load moves within seconds, and short rounds
    # spread it over every path alike (5 x 60 let one path's rounds land in a quiet spell).
    rounds: int = 15
    per_round: int = 20
    warmup: int = 10
    throughput_requests: int = 192
    concurrencies: tuple[int, ...] = (1, 8, 32)

    @classmethod
    def quick(cls) -> Plan:
        return cls(rounds=4, per_round=10, warmup=5, throughput_requests=64)

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Plan:
        return cls.quick() if args.quick else cls()


def suite_arguments(description: str | None) -> argparse.ArgumentParser:
    """The flags every suite takes: --quick and --rows FILE (summary rows for `benchmarks`)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help="fewer rounds: a smoke run")
    parser.add_argument("--rows", type=Path, help="write the summary rows (JSON) here")
    return parser


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty sample."""
    if not values:
        raise ValueError("percentile of an empty sample")
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


@dataclass(frozen=True)
class Figure:
    """One measurement over rounds: median of round medians, median of round p99s, and the
    round medians themselves (for comparisons paired round by round)."""

    p50: float
    p99: float
    rounds: tuple[float, ...] = ()


def summarise(rounds: Sequence[Sequence[float]]) -> Figure:
    """BENCH.md: the median of round medians (and of round p99s), robust to one noisy round."""
    if not rounds or not all(rounds):
        raise ValueError("every round needs at least one sample")
    medians = tuple(statistics.median(r) for r in rounds)
    return Figure(
        p50=statistics.median(medians),
        p99=statistics.median(percentile(r, 99) for r in rounds),
        rounds=medians,
    )


def added(path: float, base: float) -> float:
    """What a path adds over its baseline (may be slightly negative in noise)."""
    return path - base


def paired_added(path: Figure, base: Figure) -> float:
    """Median over rounds of (path - base) round medians: each round's pair ran seconds apart,
    so a load change between rounds cancels. Falls back to the difference of the p50s."""
    if not path.rounds or len(path.rounds) != len(base.rounds):
        return path.p50 - base.p50
    return statistics.median(p - b for p, b in zip(path.rounds, base.rounds, strict=True))


def paired_ratio(path: Figure, base: Figure) -> float:
    """Median over rounds of path / base round medians (see `paired_added`)."""
    if not path.rounds or len(path.rounds) != len(base.rounds):
        return ratio(path.p50, base.p50)
    return statistics.median(ratio(p, b) for p, b in zip(path.rounds, base.rounds, strict=True))


def ratio(value: float, base: float) -> float:
    """value / base, NaN where the base is not positive (a ratio of noise means nothing)."""
    return value / base if base > 0 else float("nan")


Op = Literal["<=", ">="]


@dataclass(frozen=True)
class Row:
    """One line of the summary: the figure, what was measured, its target and whether it is met.

    `value` is compared with `target` (both in `unit`); `measured` says where `value` came
    from in words and numbers (for example "R 2.30 ms / N 0.66 ms").
    """

    figure: str
    measured: str
    value: float
    target: float
    op: Op
    unit: str = "x"

    @property
    def met(self) -> bool | None:
        if math.isnan(self.value):
            return None
        return self.value <= self.target if self.op == "<=" else self.value >= self.target

    @property
    def ratio_text(self) -> str:
        """The ratio the target is stated in; for absolute targets, value / target."""
        if math.isnan(self.value):
            return "n/a"
        if math.isinf(self.value):
            return "unbounded"
        if self.unit == "x":
            return f"{self.value:.2f}x"
        return f"{self.value / self.target:.2f}x of target"

    @property
    def target_text(self) -> str:
        return f"{self.op} {_number(self.target)}{_unit(self.unit)}"


def _number(value: float) -> str:
    return f"{value:.3g}" if abs(value) < 10 else f"{value:.0f}"


def _unit(unit: str) -> str:
    return "x" if unit == "x" else f" {unit}"


def mark(met: bool | None) -> str:
    return {True: "met", False: "NOT met", None: "n/a"}[met]


def format_table(rows: Sequence[Row], headers: Sequence[str] | None = None) -> str:
    """A plain-text table of rows: figure | measured | target | ratio | met?"""
    head = list(headers or ("figure", "measured", "target", "ratio", "met?"))
    body = [[r.figure, r.measured, r.target_text, r.ratio_text, mark(r.met)] for r in rows]
    return text_table(head, body)


def text_table(headers: Sequence[str], body: Iterable[Sequence[str]]) -> str:
    """Left-aligned columns, as wide as their widest cell."""
    lines = [list(headers), *(list(row) for row in body)]
    widths = [max(len(line[i]) for line in lines) for i in range(len(headers))]
    out = ["  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)) for line in lines]
    out.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(line.rstrip() for line in out)


def write_rows(rows: Sequence[Row], path: Path | None) -> None:
    if path is not None:
        path.write_text(json.dumps([asdict(r) for r in rows], allow_nan=True))


def read_rows(path: Path) -> list[Row]:
    if not path.exists() or not path.read_text().strip():
        return []
    return [Row(**item) for item in json.loads(path.read_text())]


def fmt(value: float, digits: int = 2) -> str:
    return "n/a" if math.isnan(value) else f"{value:.{digits}f}"
