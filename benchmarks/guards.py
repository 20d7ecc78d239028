"""Guard cost: per-guard µs on a 1 KB prompt and the default input chain's µs per KB (p50).

Run: .venv/bin/python -m benchmarks.guards [--repeat N]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

from guards.hooks import InputCheck
from guards.policy_store import PolicyStore
from guards.verdict import Stage

PROMPT_1KB = (
    "Hi team, please summarise the attached quarterly report for the board. Focus on revenue, "
    "churn and the hiring plan; keep it under two hundred words and use plain language. The "
    "numbers: revenue grew 12.5% to 4.2 million, churn fell from 3.1% to 2.7%, and we plan to "
    "hire 14 engineers in 2025. Contact me at the usual address if anything is unclear. "
) * 4


def p50_us(fn: object, repeat: int) -> float:
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()  # type: ignore[operator]
        samples.append((time.perf_counter() - start) * 1e6)
    return statistics.median(samples)


async def chain_p50_us(store: PolicyStore, text: str, repeat: int) -> float:
    chain = store.chain(Stage.INPUT)
    check = InputCheck(text)
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        await chain.run(check)
        samples.append((time.perf_counter() - start) * 1e6)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=500)
    args = parser.parse_args()
    text = PROMPT_1KB[:1024]
    store = PolicyStore.from_file()
    print(f"policy {store.version}; prompt {len(text)} chars; p50 over {args.repeat} runs")
    check = InputCheck(text)
    for built in store.active.guards_for(""):
        us = p50_us(lambda b=built: b.guard.check_input(check), args.repeat)
        print(f"  {built.spec.name:24s} {us:8.1f} µs")
    for kb in (1, 4):
        body = (PROMPT_1KB * kb * 2)[: 1024 * kb]
        us = asyncio.run(chain_p50_us(store, body, args.repeat))
        print(f"default input chain, {kb} KB: {us:8.1f} µs p50 = {us / kb:8.1f} µs/KB")


if __name__ == "__main__":
    main()
