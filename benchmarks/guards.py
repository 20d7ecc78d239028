"""Guard cost: per-guard µs on a 1 KB prompt and the default input chain's µs per KB (p50).

Method (BENCH.md): these machines are shared and noisy, so the chain is timed in interleaved
short rounds against a baseline measured in the same run: a naive six-regex chain (the
BENCH.md floor). The figure to compare across runs is the ratio. The baseline took 340-355 µs
per KB on this project's 2-core machines, so the issue's target "default chain <= 1 ms p50 on
a 1 KB prompt" reads as <= 2.8x the baseline.

Run: .venv/bin/python -m benchmarks.guards [--quick] [--rounds N] [--per-round N]
"""

from __future__ import annotations

import asyncio
import re
import statistics
import time
from collections.abc import Awaitable, Callable

from benchmarks.harness import versions
from benchmarks.prompts import unique_variants
from benchmarks.stats import Row, suite_arguments, write_rows
from guards.chain import GuardChain
from guards.hooks import InputCheck
from guards.policy_store import PolicyStore
from guards.verdict import Stage

PROMPT_1KB = (
    "Hi team, please summarise the attached quarterly report for the board. Focus on revenue, "
    "churn and the hiring plan; keep it under two hundred words and use plain language. The "
    "numbers: revenue grew 12.5% to 4.2 million, churn fell from 3.1% to 2.7%, and we plan to "
    "hire 14 engineers in 2025. Contact me at the usual address if anything is unclear. "
) * 4

# Benchmark baseline only: what a first attempt at a guard looks like (no checksums, no spans
# merged, no classifier). Its cost tracks the machine's speed in this run.
NAIVE_REGEXES = [
    re.compile(p, re.IGNORECASE)
    for p in (
        r"[\w.+-]+@[\w-]+\.[\w.]+",
        r"\b(?:\d[ -]?){13,19}\b",
        r"\b\d{3}-\d{2}-\d{4}\b",
        r"\b(?:\d{1,3}\.){3}\d{1,3}\b",
        r"\+?\d[\d ().-]{7,}\d",
        r"ignore (?:all )?previous instructions",
    )
]
TARGET_RATIO = 2.8
# A prompt full of values (a pasted contact list, a log): the PII guard must stay linear in the
# number of findings (it was quadratic: 40,000 phone numbers in 840 KB took 20 s).
DENSE = "Reach Jo at jo.smith@example.org or Phone: 451 5986; card 4111 1111 1111 1111. "
DENSE_KB = 256
LINEAR_RATIO = 2.0


async def naive_chain(text: str) -> int:
    return sum(len(p.findall(text)) for p in NAIVE_REGEXES)


def p50_us(fn: Callable[[], object], repeat: int) -> float:
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1e6)
    return statistics.median(samples)


async def interleaved_p50_us(
    paths: dict[str, Callable[[], Awaitable[object]]], rounds: int, per_round: int
) -> dict[str, float]:
    """Median of round medians per path, the paths alternating round by round."""
    medians: dict[str, list[float]] = {name: [] for name in paths}
    for _ in range(rounds):
        for name, call in paths.items():
            samples = []
            for _ in range(per_round):
                start = time.perf_counter()
                await call()
                samples.append((time.perf_counter() - start) * 1e6)
            medians[name].append(statistics.median(samples))
    return {name: statistics.median(values) for name, values in medians.items()}


async def chain_vs_baseline(
    chain: GuardChain, text: str, rounds: int, per_round: int
) -> tuple[float, float]:
    # A new text every call, for both: the chain remembers the texts it allowed (a repeat
    # would measure that memory, not the guards).
    texts, base_texts = unique_variants(text), unique_variants(text)
    result = await interleaved_p50_us(
        {
            "chain": lambda: chain.run(InputCheck(next(texts))),
            "baseline": lambda: naive_chain(next(base_texts)),
        },
        rounds,
        per_round,
    )
    return result["chain"], result["baseline"]


def main() -> None:
    parser = suite_arguments(__doc__)
    parser.add_argument("--rounds", type=int, default=None, help="default 15, --quick 5")
    parser.add_argument("--per-round", type=int, default=40)
    args = parser.parse_args()
    rounds = args.rounds or (5 if args.quick else 15)
    text = PROMPT_1KB[:1024]
    store = PolicyStore.from_file()
    print(versions())
    print(f"policy {store.version}; prompt {len(text)} chars")
    check = InputCheck(text)
    for built in store.active.guards_for(""):
        us = p50_us(lambda b=built: b.guard.check_input(check), rounds * args.per_round)
        print(f"  {built.spec.name:24s} {us:8.1f} µs")
    chain = store.chain(Stage.INPUT)
    rows = []
    for kb in (1, 4):
        body = (PROMPT_1KB * kb * 2)[: 1024 * kb]
        us, base = asyncio.run(chain_vs_baseline(chain, body, rounds, args.per_round))
        print(
            f"default input chain, {kb} KB: {us:8.1f} µs p50 = {us / kb:7.1f} µs/KB; "
            f"naive 6-regex baseline {base:7.1f} µs; ratio {us / base:4.2f}x "
            f"(target <= {TARGET_RATIO}x at 1 KB)"
        )
        if kb == 1:
            rows.append(
                Row(
                    "default input guard chain, 1 KB, vs naive 6-regex chain (BENCH)",
                    f"{us:.0f} us / {base:.0f} us",
                    us / base,
                    TARGET_RATIO,
                    "<=",
                )
            )
    rows.append(dense_pii_row(rounds))
    rows += content_safety_rows(rounds)
    write_rows(rows, args.rows)


CONTENT_SAFETY_MS_PER_KB = 5.0  # issue 15: <= 5 ms per 1 KB on 2 cores


# Ordinary sentences of several kinds (written for this benchmark), each with a counter so that
# no call repeats a window; rotated so that each 1 KB body starts elsewhere.
PROSE = (
    "The committee met on day {} to review the budget, the hiring plan and the office move.",
    "Our deploy on {} failed because the migration locked the orders table for four minutes.",
    "Please bring the signed forms ({}) to reception before the visit on Thursday morning.",
    "The recipe ({}) needs two eggs, a cup of flour and twenty minutes in a hot oven.",
    "Ticket {} reports that the export button does nothing when the file name has a comma.",
    "The match on {} ended in a draw after the visitors scored twice in the last ten minutes.",
    "Customers in the pilot ({}) asked for weekly summaries instead of daily e-mails.",
    "Rain is expected on {} along the coast, with strong winds in the afternoon.",
    "The contract ({}) renews each year unless either side gives ninety days' notice.",
    "We replaced the fan in rack {} and the temperature alarms stopped the same evening.",
    "The museum tour ({}) starts at ten and ends in the garden café around noon.",
    "Invoice {} was paid twice; finance will refund the second payment this week.",
)


def content_safety_rows(rounds: int) -> list[Row]:
    """ms per KB of each content-safety model on 1 KB of varied prose, each call a new text
    (the embedders' memos would otherwise answer repeats: sentences carry a counter)."""
    from guards.detectors.content_safety import ContentSafetyDetector

    rows = []
    # minilm: the default (static first pass) and MiniLM on every window (static_first: false)
    for model, static_first in (("minilm", True), ("minilm", False), ("ngram", False)):
        detector = ContentSafetyDetector(model=model, static_first=static_first)
        if model == "minilm":
            model = "minilm, static first" if static_first else "minilm, every window"
        samples = []
        for n in range(max(5, rounds)):
            body = " ".join(
                PROSE[(n + k) % len(PROSE)].format(f"{n}-{k}") for k in range(len(PROSE))
            )[:1024]
            start = time.perf_counter()
            detector.find(body)
            samples.append((time.perf_counter() - start) * 1000)
        ms = statistics.median(samples)
        print(f"content_safety model {model}: {ms:.2f} ms per KB of prose (target <= 5)")
        rows.append(
            Row(
                f"content_safety guard ({model}), 1 KB of prose",
                f"{ms:.2f} ms",
                ms,
                CONTENT_SAFETY_MS_PER_KB,
                "<=",
                "ms",
            )
        )
    return rows


def dense_pii_row(rounds: int) -> Row:
    """µs per KB of the PII detector on DENSE_KB of values against 1 KB of the same."""
    from guards.detectors.pii import PiiDetector

    pii = PiiDetector()
    small = (DENSE * (1024 // len(DENSE) + 1))[:1024]
    big = (DENSE * (DENSE_KB * 1024 // len(DENSE) + 1))[: DENSE_KB * 1024]
    per_kb_small = p50_us(lambda: pii.find(small), rounds * 20)
    per_kb_big = p50_us(lambda: pii.find(big), max(3, rounds // 3)) / DENSE_KB
    findings = len(pii.find(big))
    print(
        f"pii on {DENSE_KB} KB of values ({findings} findings): {per_kb_big:.0f} µs/KB; "
        f"on 1 KB of the same: {per_kb_small:.0f} µs/KB; ratio {per_kb_big / per_kb_small:.2f}x "
        f"(target <= {LINEAR_RATIO}x: linear)"
    )
    return Row(
        f"PII guard, {DENSE_KB} KB full of values vs 1 KB: us per KB (linear)",
        f"{per_kb_big:.0f} / {per_kb_small:.0f} us/KB ({findings} findings)",
        per_kb_big / per_kb_small,
        LINEAR_RATIO,
        "<=",
    )


if __name__ == "__main__":
    main()
