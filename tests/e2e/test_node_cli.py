"""`mesh node --router` as a subprocess against an in-test RegistryService in this process.

The node is the real SmolLM2 on the transformers engine; the registry is the minimal recorder
of the registration tests, served with grpc.aio on loopback.
"""

from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import grpc.aio
import pytest
from click.testing import CliRunner

from mesh.cli import cli
from mesh.contract.serving import BoundServer
from mesh.v1 import inference_pb2_grpc
from tests.helpers import assert_real_answer, request, wait_until
from tests.integration.test_registration import RecordingRegistry, start_registry

MESH = [sys.executable, "-m", "mesh"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
async def registry() -> AsyncIterator[tuple[RecordingRegistry, str]]:
    recorder = RecordingRegistry(heartbeat_interval_s=0.1)
    bound: BoundServer = await start_registry(recorder)
    yield recorder, f"127.0.0.1:{bound.port}"
    await bound.server.stop(0)


async def _stderr_of(proc: asyncio.subprocess.Process) -> str:
    assert proc.stderr is not None
    return (await proc.stderr.read()).decode(errors="replace")


@pytest.mark.model
async def test_node_registers_serves_and_deregisters_on_sigterm(
    registry: tuple[RecordingRegistry, str], smollm2_path: Path
) -> None:
    recorder, router_address = registry
    port = _free_port()
    proc = await asyncio.create_subprocess_exec(
        *MESH,
        "node",
        "--engine",
        "transformers",
        "--node-id",
        "cli-node",
        "--listen",
        f"127.0.0.1:{port}",
        "--router",
        router_address,
        "--advertise",
        f"localhost:{port}",
        "--price-in",
        "0.02",
        "--price-out",
        "0.04",
        "--max-inflight",
        "3",
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        registered = await wait_until(
            lambda: "cli-node" in recorder.table or proc.returncode is not None, timeout_s=240
        )
        assert registered and proc.returncode is None, await _stderr_of(proc)
        entry = recorder.table["cli-node"]
        assert entry.address == f"localhost:{port}"
        assert [m.model_id for m in entry.models] == ["smollm2-135m-instruct"]
        assert entry.load.max_inflight == 3

        # The registered address is what a router dials: it answers.
        async with grpc.aio.insecure_channel(entry.address) as channel:
            stub = inference_pb2_grpc.InferenceServiceStub(channel)
            assert_real_answer(await stub.Generate(request(), timeout=60), node_id="cli-node")
        assert await wait_until(
            lambda: any(h.load.ewma_ttft_ms > 0 for h in recorder.heartbeats()), timeout_s=10
        )

        proc.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(proc.wait(), timeout=60)
        stderr = await _stderr_of(proc)
        assert code == 0, stderr
        assert recorder.names()[-1] == "Deregister" and recorder.table == {}
        assert "Traceback" not in stderr
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


@pytest.mark.parametrize(
    ("flags", "named"),
    [
        (["--router", "0.0.0.0:50051"], "router_address"),
        (["--router", "127.0.0.1:1", "--listen", "0.0.0.0:0"], "advertise_address is required"),
        (["--advertise", "node-a:0"], "advertise_address"),
        (["--max-num-seqs", "0"], "max_num_seqs"),
        (["--max-model-len", "8"], "max_model_len"),
        (["--kv-cache-gib", "0"], "kv_cache_gib"),
        (["--dtype", "int3"], "--dtype"),
        (["--heartbeat-interval", "0"], "heartbeat_interval_s"),
    ],
)
def test_bad_node_flags_fail_before_loading_a_model(flags: list[str], named: str) -> None:
    # In-process: validation happens before any engine or server starts.
    result = CliRunner().invoke(cli, ["node", "--engine", "fake", *flags])
    assert result.exit_code != 0 and named in result.stderr, result.stderr
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_a_bad_flag_is_one_message_without_traceback() -> None:
    out = subprocess.run(
        [*MESH, "node", "--engine", "fake", "--router", "127.0.0.1:99999"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 1 and "router_address" in out.stderr
    assert "Traceback" not in out.stderr
