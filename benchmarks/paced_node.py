"""A benchmark node whose FakeEngine (the deterministic test engine) paces its chunks.

`mesh node --engine fake` sends its 8 chunks back to back, which shows each hop's own cost per
chunk but not when text reaches the client: a router that holds the whole answer back looks
almost as fast as one that streams it. Here the engine waits `--pace-ms` between chunks, as a
model producing tokens does, so holding text back shows in the time to first chunk. The pace
is FakeEngine's test hook (`script.delay_between_s`), which the CLI does not expose; the rest
is the node's own runtime, served as `mesh node` serves it.

Run: python -m benchmarks.paced_node --listen 127.0.0.1:PORT --pace-ms 5
"""

from __future__ import annotations

import argparse
import asyncio

from mesh.config import NodeConfig
from mesh.config.telemetry import TelemetrySettings
from mesh.serve_loop import serve_until_signal
from mesh.telemetry import setup_telemetry
from nodes.engines.fake import FakeEngine
from nodes.runtime import NodeRuntime

MODEL = "fake-model"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--listen", required=True)
    parser.add_argument("--node-id", default="paced-fake-node")
    parser.add_argument("--pace-ms", type=float, required=True, help="wait between chunks")
    args = parser.parse_args()
    config = NodeConfig(
        id=args.node_id,
        engine="fake",
        model=MODEL,
        listen=args.listen,
        tier="frontier",  # capable of every prompt the default config's estimate sends it
        max_inflight=256,
    )
    engine = FakeEngine(MODEL)
    engine.script.delay_between_s = args.pace_ms / 1e3
    telemetry = setup_telemetry(f"mesh-node-{config.id}", TelemetrySettings(prometheus_listen=None))
    runtime = NodeRuntime(config, backend=engine, telemetry=telemetry)
    asyncio.run(
        serve_until_signal(
            runtime.start,
            runtime.stop,
            grace_s=1.0,
            on_ready=lambda address: print(f"paced node ready on {address}", flush=True),
        )
    )


if __name__ == "__main__":
    main()
