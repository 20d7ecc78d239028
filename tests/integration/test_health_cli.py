"""`mesh health` against a real grpc.aio server on loopback whose health status we set
(through the root command, so its error boundary is the one users get)."""

from __future__ import annotations

import asyncio

from click.testing import CliRunner
from grpc_health.v1 import health_pb2

from mesh.cli import cli
from mesh.contract.serving import bound_address, create_server


async def test_exit_code_follows_the_served_status() -> None:
    bound = create_server("127.0.0.1:0", [])
    await bound.server.start()
    address = bound_address("127.0.0.1:0", bound.port)
    runner = CliRunner()
    try:
        await bound.health.set("", health_pb2.HealthCheckResponse.SERVING)
        ok = await asyncio.to_thread(runner.invoke, cli, ["health", "--target", address])
        assert (ok.exit_code, ok.output.strip()) == (0, "SERVING")

        await bound.health.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
        down = await asyncio.to_thread(runner.invoke, cli, ["health", "--target", address])
        assert down.exit_code == 1
        assert down.output.splitlines()[0] == "NOT_SERVING"
        assert f"mesh: {address} (server) is NOT_SERVING" in down.output
    finally:
        await bound.server.stop(0)
    gone = await asyncio.to_thread(
        runner.invoke, cli, ["health", "--target", address, "--timeout", "1"]
    )
    assert gone.exit_code == 1 and "mesh: UNAVAILABLE" in gone.output
