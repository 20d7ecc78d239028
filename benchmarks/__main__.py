"""`make bench`: every suite in its own process, then one summary of all figures with targets.

Each suite runs as `python -m SUITE --rows FILE [--quick]` (vLLM spawns workers; isolation
keeps one suite's threads and caches from skewing the next) and writes its summary rows to
FILE. A suite that fails or overruns its time is stopped (SIGTERM, which stops its servers,
then SIGKILL) and the others still run. Run: python -m benchmarks [--quick] [--only SUITE ...]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from benchmarks.harness import versions
from benchmarks.stats import Row, format_table, read_rows


@dataclass(frozen=True)
class Suite:
    module: str
    timeout_s: float
    in_quick: bool = True  # vLLM's suite takes minutes: not part of a smoke run
    writes_rows: bool = True  # takes --rows FILE (the others print their figures only)


SUITES = (
    Suite("benchmarks.cli_start", 300),
    Suite("benchmarks.guards", 600),
    Suite("benchmarks.cache", 600),
    Suite("benchmarks.tracing", 900, writes_rows=False),
    Suite("benchmarks.router", 1800),
    Suite("benchmarks.soak", 600),
    Suite("benchmarks.streaming", 1800),
    Suite("benchmarks.litellm_beside", 3000),  # the first run builds LiteLLM's venv
    Suite("benchmarks.vllm_node", 1800, in_quick=False),
)


def run_suite(suite: Suite, rows_file: Path, quick: bool) -> int:
    args = [sys.executable, "-m", suite.module]
    if suite.writes_rows:
        args += ["--rows", str(rows_file)]
    if quick:
        args.append("--quick")
    proc = subprocess.Popen(args)
    try:
        return proc.wait(timeout=suite.timeout_s)
    except subprocess.TimeoutExpired:
        print(f"{suite.module}: over {suite.timeout_s:.0f} s, stopping it", flush=True)
        proc.terminate()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        return 124
    except BaseException:
        proc.terminate()
        proc.wait(timeout=60)
        raise


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer rounds; skips vLLM's suite")
    parser.add_argument("--only", nargs="*", metavar="SUITE", help="e.g. router streaming")
    args = parser.parse_args(argv)
    print(versions(), "(figures on shared machines are noisy: read the ratios)")
    chosen = [s for s in SUITES if not args.only or s.module.split(".")[-1] in args.only]
    rows: list[Row] = []
    failed, missing = [], []
    with tempfile.TemporaryDirectory(prefix="mesh-bench-rows-") as tmp:
        for suite in chosen:
            print(f"\n=== {suite.module}", flush=True)
            if args.quick and not suite.in_quick:
                print("skipped in --quick")
                continue
            rows_file = Path(tmp) / f"{suite.module}.json"
            if run_suite(suite, rows_file, args.quick) != 0:
                failed.append(suite.module)
            suite_rows = read_rows(rows_file)
            if suite.writes_rows and not suite_rows:
                missing.append(suite.module)
            rows += suite_rows
    print("\n=== summary (ratios against baselines measured in the same run)")
    print(format_table(rows))
    for module in missing:
        print(f"no figures from {module} (skipped or failed: see its section above)")
    if failed:
        print("failed: " + ", ".join(failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
