"""Rows of the reliability suite's scenario table: calls tried, failed and how long they took.

Each scenario test records every call it makes (`ok` or not, its latency); a call the scenario
expects to be refused (a hijack attempt, a stream cut by a killed node) counts as `expected`.
tests/reliability/conftest.py prints the table at the end of the run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field


def percentile(values: list[float], share: float) -> float:
    """The nearest-rank percentile (0 for no values)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


@dataclass
class Scenario:
    """One row of the table."""

    name: str
    tried: int = 0
    failed: int = 0
    expected: int = 0  # refusals and cut calls the scenario expects
    latencies_s: list[float] = field(default_factory=list)
    figures: list[str] = field(default_factory=list)

    def record(self, latency_s: float, *, ok: bool = True, expected: bool = False) -> None:
        """One call: `ok` (as the scenario wants it), else an `expected` refusal, else failed."""
        self.tried += 1
        self.latencies_s.append(latency_s)
        if not ok:
            if expected:
                self.expected += 1
            else:
                self.failed += 1

    def figure(self, text: str) -> None:
        """A measured figure printed under the table (p99, RSS growth, counts)."""
        self.figures.append(text)

    @property
    def worst_s(self) -> float:
        return max(self.latencies_s, default=0.0)

    @property
    def p99_s(self) -> float:
        return percentile(self.latencies_s, 0.99)


class ScenarioTable:
    """The rows, in the order the scenarios first recorded."""

    def __init__(self) -> None:
        self.rows: dict[str, Scenario] = {}

    def __call__(self, name: str) -> Scenario:
        return self.rows.setdefault(name, Scenario(name))

    def lines(self) -> list[str]:
        header = ("scenario", "tried", "failed", "expected", "worst ms", "p99 ms")
        rows = [header] + [
            (
                s.name,
                str(s.tried),
                str(s.failed),
                str(s.expected),
                f"{s.worst_s * 1000:.0f}",
                f"{s.p99_s * 1000:.0f}",
            )
            for s in self.rows.values()
        ]
        widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
        out = [
            "  ".join(
                c.ljust(w) if i == 0 else c.rjust(w)
                for i, (c, w) in enumerate(zip(r, widths, strict=True))
            )
            for r in rows
        ]
        for s in self.rows.values():
            out += [f"{s.name}: {text}" for text in s.figures]
        return out
