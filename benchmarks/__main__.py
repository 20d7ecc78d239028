"""`make bench`: run each benchmark in its own process (vLLM spawns workers; isolation keeps
one benchmark's threads and caches from skewing the next)."""

from __future__ import annotations

import platform
import subprocess
import sys

import grpc

SUITES = ("benchmarks.guards", "benchmarks.cache", "benchmarks.router", "benchmarks.vllm_node")


def main() -> int:
    print(f"python {platform.python_version()}  grpcio {grpc.__version__}")
    failed = 0
    for suite in SUITES:
        print(f"\n=== {suite}", flush=True)
        failed += subprocess.call([sys.executable, "-m", suite]) != 0
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
