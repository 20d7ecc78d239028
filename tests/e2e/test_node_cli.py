"""`mesh node --router` as a subprocess against an in-test RegistryService in this process.

The node is the real SmolLM2 on the transformers engine; the registry is the minimal recorder
of the registration tests, served with grpc.aio on loopback. The registration-token tests run
`mesh node --engine fake` against the router's real RegistryServicer: what they test is the
CLI's token flags and who gets into the routing table, not a model.
"""

from __future__ import annotations

import asyncio
import os
import re
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import grpc
import grpc.aio
import pytest
from click.testing import CliRunner

from mesh.cli import cli
from mesh.contract.node_token import NodeToken
from mesh.contract.serving import BoundServer, create_server
from mesh.router.catalog import Catalog
from mesh.router.registry import RegistryServicer, add_registry_service
from mesh.router.registry_auth import RegistryAccess
from mesh.v1 import inference_pb2_grpc
from tests.helpers import assert_real_answer, request, wait_until
from tests.integration.test_registration import RecordingRegistry, start_registry
from tests.process import ServerProcess, free_address, free_port, run_mesh, start_mesh


@pytest.fixture
async def registry() -> AsyncIterator[tuple[RecordingRegistry, str]]:
    recorder = RecordingRegistry(heartbeat_interval_s=0.1)
    bound: BoundServer = await start_registry(recorder)
    yield recorder, f"127.0.0.1:{bound.port}"
    await bound.server.stop(0)


@pytest.mark.model
async def test_node_registers_serves_and_deregisters_on_sigterm(
    registry: tuple[RecordingRegistry, str], smollm2_path: Path, tmp_path: Path
) -> None:
    recorder, router_address = registry
    port = free_port()
    # The waits and the stop run in a thread: the registry on this event loop keeps answering.
    async with start_mesh(
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
        log=tmp_path / "node.log",
    ) as proc:
        registered = await wait_until(
            lambda: "cli-node" in recorder.table or proc.returncode is not None, timeout_s=240
        )
        assert registered and proc.returncode is None, proc.tail()
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

        code, output = await _sigterm(proc)
        assert code == 0, output
        assert recorder.names()[-1] == "Deregister" and recorder.table == {}
        assert "Traceback" not in output


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
        (["--router-token-env", "A", "--router-token-file", "/t"], "not both"),
        (["--router-token-env", ""], "router_token_env"),
        (["--metrics-listen", "9464"], "--metrics-listen"),
        (["--metrics-listen", "127.0.0.1:http"], "--metrics-listen"),
    ],
)
def test_bad_node_flags_fail_before_loading_a_model(flags: list[str], named: str) -> None:
    # In-process: validation happens before any engine or server starts.
    result = CliRunner().invoke(cli, ["node", "--engine", "fake", *flags])
    assert result.exit_code == 2 and named in result.stderr, result.stderr
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_a_bad_flag_is_one_message_without_traceback() -> None:
    out = run_mesh("node", "--engine", "fake", "--router", "127.0.0.1:99999", timeout_s=120)
    assert out.returncode == 2 and "router_address" in out.stderr  # 2: the flags must change
    assert out.stderr.startswith("mesh: ") and len(out.stderr.splitlines()) == 1, out.stderr


# --- the registration token (fake engine: the CLI's flags are under test, not a model) -------
TOKEN = "cli-node-token-5e8b2a7d9c1f"
WRONG = "cli-node-token-000000000000"


class CallRecorder(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Records every method called, refused or not."""

    def __init__(self) -> None:
        self.methods: list[str] = []

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        self.methods.append(details.method.rsplit("/", 1)[-1])  # type: ignore[attr-defined]
        return await continuation(details)


TokenRegistry = tuple[Catalog, CallRecorder, str]


@pytest.fixture
async def token_registry() -> AsyncIterator[TokenRegistry]:
    """The router's real RegistryServicer, wanting TOKEN, on loopback."""
    catalog, calls = Catalog(ttl_s=5, heartbeat_interval_s=0.1), CallRecorder()
    bound = create_server(
        "127.0.0.1:0",
        [
            (
                add_registry_service,
                RegistryServicer(catalog, access=RegistryAccess.with_token(NodeToken(TOKEN))),
                "mesh.v1.RegistryService",
            )
        ],
        interceptors=[calls],
    )
    await bound.server.start()
    yield catalog, calls, f"127.0.0.1:{bound.port}"
    await bound.server.stop(0)


def _fake_node(
    node_id: str, router_address: str, log: Path, *flags: str, env: dict[str, str] | None = None
) -> ServerProcess:
    child_env = {k: v for k, v in os.environ.items() if k != "MESH_REGISTRY_TOKEN"}
    child_env |= {"MESH_LOG_FORMAT": "text", **(env or {})}  # plain log lines
    return start_mesh(
        "node",
        "--engine",
        "fake",
        "--node-id",
        node_id,
        "--listen",
        free_address(),
        "--router",
        router_address,
        "--heartbeat-interval",
        "0.1",  # short back-off: several refused attempts within a few seconds
        *flags,
        env=child_env,
        log=log,
    )


async def _sigterm(proc: ServerProcess) -> tuple[int, str]:
    """SIGTERM, the exit code (SIGKILL after 60 s), and everything the process wrote."""
    code = await proc.stop_async(grace_s=60)
    return code, proc.output()


async def test_node_cli_registers_with_the_token_from_env_and_deregisters(
    token_registry: TokenRegistry, tmp_path: Path
) -> None:
    catalog, _, router_address = token_registry
    async with _fake_node(
        "cli-token",
        router_address,
        tmp_path / "node.log",
        "--router-token-env",
        "TEST_CLI_NODE_TOKEN",
        env={"TEST_CLI_NODE_TOKEN": TOKEN},
    ) as proc:
        joined = await wait_until(
            lambda: catalog.get("cli-token") is not None or proc.returncode is not None,
            timeout_s=120,
        )
        assert joined and proc.returncode is None, proc.tail()
        code, output = await _sigterm(proc)
        assert code == 0, output
        assert len(catalog) == 0  # Deregister carried the token
        assert TOKEN not in output and "Traceback" not in output


async def test_node_cli_with_a_wrong_token_stays_out_keeps_serving_and_says_so_once(
    token_registry: TokenRegistry, tmp_path: Path
) -> None:
    catalog, calls, router_address = token_registry
    token_file = tmp_path / "token"
    token_file.write_text(WRONG)
    async with _fake_node(
        "cli-wrong", router_address, tmp_path / "node.log", "--router-token-file", str(token_file)
    ) as proc:
        # Several refused attempts with back-off (0.2 s, 0.4 s, 0.8 s, ...), and still running.
        assert await wait_until(lambda: calls.methods.count("Register") >= 4, timeout_s=60)
        assert proc.returncode is None and len(catalog) == 0
        code, output = await _sigterm(proc)
        assert code == 0, output
        refusals = [line for line in output.splitlines() if "refused node cli-wrong" in line]
        assert len(refusals) == 1, output
        assert "NODE_TOKEN_REJECTED" in refusals[0]
        assert WRONG not in output and TOKEN not in output and "Traceback" not in output


def test_an_unreadable_token_file_is_one_message_before_the_engine(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-token"
    env = {**os.environ, "MESH_LOG_FORMAT": "text"}
    out = run_mesh(
        "node", "--engine", "fake", "--listen", "127.0.0.1:0", "--router", "127.0.0.1:1",
        "--router-token-file", str(missing),
        env=env,
        timeout_s=120,
    )  # fmt: skip
    assert out.returncode == 2 and "cannot read token file" in out.stderr, out.stderr
    assert "Traceback" not in out.stderr and "ready on" not in out.stderr
    assert [line for line in out.stderr.splitlines() if line.startswith("mesh: ")] == [
        next(line for line in out.stderr.splitlines() if "cannot read token file" in line)
    ]


async def test_bridge_cli_registers_with_the_token_from_a_file(
    token_registry: TokenRegistry, tmp_path: Path
) -> None:
    # Registration needs no provider call: the base URL is never dialled in this test.
    catalog, _, router_address = token_registry
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    env = {k: v for k, v in os.environ.items() if k != "MESH_REGISTRY_TOKEN"}
    async with start_mesh(
        "bridge",
        "--provider", "openai-compatible",
        "--base-url", "http://127.0.0.1:9/v1",
        "--model", "cli-bridge-model",
        "--price-in", "0.1", "--price-out", "0.2",
        "--context-window", "1024",
        "--node-id", "cli-bridge",
        "--listen", free_address(),
        "--router", router_address,
        "--router-token-file", str(token_file),
        "--metrics-listen", "off",
        env={**env, "MESH_LOG_FORMAT": "text"},
        log=tmp_path / "bridge.log",
    ) as proc:  # fmt: skip
        joined = await wait_until(
            lambda: catalog.get("cli-bridge") is not None or proc.returncode is not None,
            timeout_s=120,
        )
        assert joined and proc.returncode is None, proc.tail()
        entry = catalog.get("cli-bridge")
        assert entry is not None and entry.cards[0].model_id == "cli-bridge-model"
        code, output = await _sigterm(proc)
        assert code == 0, output
        assert len(catalog) == 0 and TOKEN not in output
        assert "metrics off" in output and "metrics endpoint" not in output


def test_bridge_cli_refuses_two_token_sources() -> None:
    # In-process: the node config is checked before anything starts.
    result = CliRunner().invoke(
        cli,
        ["bridge", "--provider", "openai-compatible", "--base-url", "http://127.0.0.1:9/v1",
         "--model", "m", "--price-in", "0", "--price-out", "0", "--context-window", "1024",
         "--router", "127.0.0.1:1", "--router-token-env", "A", "--router-token-file", "/t"],
    )  # fmt: skip
    assert result.exit_code == 2 and "not both" in result.stderr, result.stderr


# --- --metrics-listen (fake engine: the flag is under test, not a model) ------------------
def _node_without_router(node_id: str, metrics_listen: str, log: Path) -> ServerProcess:
    return start_mesh(
        "node", "--engine", "fake", "--node-id", node_id,
        "--listen", free_address(), "--metrics-listen", metrics_listen,
        env={**os.environ, "MESH_LOG_FORMAT": "text"},
        log=log,
    )  # fmt: skip


def _scrape(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as reply:
        return str(reply.read().decode())


async def test_nodes_on_one_machine_each_get_their_own_metrics_endpoint_or_none(
    tmp_path: Path,
) -> None:
    port = free_port()
    procs = [
        _node_without_router("metrics-a", f"127.0.0.1:{port}", tmp_path / "a.log"),
        _node_without_router("metrics-b", "127.0.0.1:0", tmp_path / "b.log"),  # a free port
        _node_without_router("metrics-off", "off", tmp_path / "off.log"),
    ]
    try:
        ready_a, ready_b, ready_off = [
            (await proc.wait_for_output_async(r"^.*ready on.*$", timeout_s=120)).group(0)
            for proc in procs
        ]
        url_a = f"http://127.0.0.1:{port}/metrics"
        assert url_a in ready_a, ready_a
        url_b = re.search(r"metrics on (http://127\.0\.0\.1:\d+/metrics)", ready_b)
        assert url_b is not None and url_b.group(1) != url_a, ready_b
        assert "metrics off" in ready_off, ready_off
        # Each endpoint is its own node's: the node gauges carry its id.
        body_a = await asyncio.to_thread(_scrape, url_a)
        body_b = await asyncio.to_thread(_scrape, url_b.group(1))
        assert 'mesh_node="metrics-a"' in body_a and "metrics-b" not in body_a
        assert 'mesh_node="metrics-b"' in body_b and "metrics-a" not in body_b
        for proc in procs:
            code, output = await _sigterm(proc)
            assert code == 0 and "metrics endpoint" not in output, output
    finally:
        for proc in procs:
            await proc.stop_async()
