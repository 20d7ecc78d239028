"""The `mesh` command end to end: `mesh up` as a subprocess, `mesh chat` against it."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fixtures.fault_injector import FaultInjector, Reply
from tests.process import free_port, run_mesh, start_mesh

pytestmark = pytest.mark.model


@pytest.fixture(scope="module")
def mesh_up(tmp_path_factory: pytest.TempPathFactory, smollm2_path: Path) -> Iterator[str]:
    port = free_port()
    root = tmp_path_factory.mktemp("e2e")
    config = root / "mesh.yaml"
    config.write_text(
        f"""
router:
  listen: 127.0.0.1:{port}
nodes:
  - id: e2e-node
    engine: transformers
    model: smollm2-135m-instruct
    input_price_per_mtok: 0.02
    output_price_per_mtok: 0.04
    aliases: [smollm2]
"""
    )
    address = f"127.0.0.1:{port}"
    with start_mesh("up", "--config", str(config), log=root / "up.log") as up:
        up.wait_until_serving(address)
        yield address
    assert up.returncode == 0, up.tail()


def _mesh(*args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return run_mesh(*args, env={**os.environ, "MESH_API_KEY": ""}, timeout_s=timeout)


def test_chat_prints_the_answer_and_route(mesh_up: str) -> None:
    out = _mesh(
        "chat",
        "--target",
        mesh_up,
        "--temperature",
        "0",
        "--max-tokens",
        "16",
        "What is the capital of France?",
    )
    assert out.returncode == 0, out.stderr
    assert "Paris" in out.stdout
    assert "node=e2e-node" in out.stderr and "policy=cheapest" in out.stderr
    assert "cost $" in out.stderr


def test_chat_json_is_the_response_message(mesh_up: str) -> None:
    out = _mesh(
        "chat", "--target", mesh_up, "--json", "--max-tokens", "8", "--model", "smollm2", "Say hi."
    )
    assert out.returncode == 0, out.stderr
    reply = json.loads(out.stdout)
    assert reply["route"]["policy"] == "pinned"
    assert int(reply["usage"]["outputTokens"]) > 0 and reply["text"]


def test_chat_stream_prints_tokens_then_route(mesh_up: str) -> None:
    out = _mesh("chat", "--target", mesh_up, "--stream", "--max-tokens", "12", "Name three colors.")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() and "route:" in out.stderr


def test_chat_errors_are_precise_and_have_no_traceback(mesh_up: str) -> None:
    out = _mesh("chat", "--target", mesh_up, "--model", "gpt-9", "hello")
    assert out.returncode == 2
    assert "NOT_FOUND (MODEL_NOT_FOUND)" in out.stderr and "Traceback" not in out.stderr
    out = _mesh("chat", "--target", mesh_up, "--temperature", "-1", "hello")
    assert out.returncode == 2 and "sampling.temperature" in out.stderr


def test_models_list_and_path(smollm2_path: Path) -> None:
    out = _mesh("models", "list")
    assert out.returncode == 0 and "smollm2-135m-instruct" in out.stdout and "ready" in out.stdout
    out = _mesh("models", "path", "smollm2-135m-instruct")
    assert out.returncode == 0 and Path(out.stdout.strip()) == smollm2_path
    out = _mesh("models", "path", "no-such-model")
    assert out.returncode != 0 and "unknown model" in out.stderr


def test_bad_config_fails_at_start_naming_line_and_key(tmp_path: Path) -> None:
    bad = tmp_path / "mesh.yaml"
    bad.write_text("router:\n  listen: 127.0.0.1:1\nnodes:\n  - id: x\n    engnie: fake\n")
    out = _mesh("up", "--config", str(bad), timeout=60)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert out.stderr.startswith("mesh: invalid config:")
    assert f"{bad}:5: nodes[0].engnie: unknown key" in out.stderr


def test_nodes_shows_the_routing_table(mesh_up: str) -> None:
    out = _mesh("nodes", "--router", mesh_up)
    assert out.returncode == 0, out.stderr
    header, row = out.stdout.splitlines()[:2]
    assert header.split()[:4] == ["node", "source", "health", "breaker"]
    assert row.split()[:4] == ["e2e-node", "static", "up", "closed"]
    assert "serves smollm2-135m-instruct (self-hosted, $0.02/$0.04 per M)" in out.stdout
    out = _mesh("nodes", "--router", mesh_up, "--json")
    assert json.loads(out.stdout.splitlines()[0])["node_id"] == "e2e-node"


def test_costs_reports_spend_baseline_and_savings(mesh_up: str) -> None:
    for _ in range(2):  # the second is answered from the cache
        out = _mesh("chat", "--target", mesh_up, "--max-tokens", "8", "Name a primary color.")
        assert out.returncode == 0, out.stderr
    # The ledger writes rows in batches (router.ledger.flush_interval_s): read until the
    # second chat's row is there, within a bound.
    deadline = time.monotonic() + 20
    while True:
        out = _mesh("costs", "--by", "model", "--since", "1h")
        assert out.returncode == 0, out.stderr
        assert out.stdout.splitlines()[0].split()[:2] == ["model", "requests"]
        row = next(line for line in out.stdout.splitlines() if line.startswith("smollm2"))
        requests, hits = (int(v) for v in row.split()[1:3])
        if hits >= 1 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert requests >= 2 and hits >= 1
    (total,) = json.loads(_mesh("costs", "--json").stdout)
    assert total["baseline_usd"] > total["spend_usd"] > 0 and total["savings_cache_usd"] > 0
    out = _mesh("costs", "--since", "yesterday-ish")
    assert out.returncode == 2 and "--since" in out.stderr


def test_route_eval_reports_cost_and_misrouting(tmp_path: Path) -> None:
    labelled = tmp_path / "labelled.jsonl"
    labelled.write_text(
        json.dumps({"text": "What is the capital of Italy?", "tier": "small"})
        + "\n"
        + json.dumps(
            {
                "text": "Prove step by step that the square root of 2 is irrational, then "
                "generalise the argument to every non-square integer.",
                "tier": "frontier",
            }
        )
        + "\n"
    )
    out = _mesh("route-eval", str(labelled), "--json")
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert {"cost_ratio", "under_routing_rate", "over_routing_rate", "tier_share"} <= set(report)
    assert report["n"] == 2 and 0 < report["cost_ratio"] < 1
    assert report["under_routing_rate"] == 0
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"text": "hi", "tier": "huge"}\n')
    out = _mesh("route-eval", str(broken))
    assert out.returncode == 1 and "broken.jsonl:1" in out.stderr and "Traceback" not in out.stderr


def test_keys_hash_reads_the_key_from_stdin() -> None:
    out = run_mesh("keys", "hash", stdin="s3cret\n", timeout_s=60)
    assert out.returncode == 0, out.stderr
    # sha256("s3cret"), the value that goes into router.auth.api_keys[].sha256
    assert out.stdout.strip() == "1ec1c26b50d5d3c58d9583181af8076655fe00756bf7285940ba3670f99fcba0"


@pytest.mark.parametrize("command", ["router", "up"])
def test_an_unusable_ledger_url_stops_the_server_with_one_clear_line(
    command: str, tmp_path: Path
) -> None:
    config = tmp_path / "mesh.yaml"
    secret = "s3cr3t-password"
    config.write_text(
        "router:\n"
        f"  listen: 127.0.0.1:{free_port()}\n"
        f"  ledger: {{url: 'postgresql://mesh:{secret}@127.0.0.1:1/ledger'}}\n"
        "nodes: []\n"
    )
    out = _mesh(command, "--config", str(config), timeout=120)
    assert out.returncode == 2, out.stderr  # 2: no driver serves this URL, the config must change
    assert "Traceback" not in out.stderr and secret not in out.stderr
    (line,) = [line for line in out.stderr.splitlines() if line.startswith("mesh: ")]
    assert line.startswith("mesh: FAILED_PRECONDITION (INVALID_LEDGER_URL): ledger url ")


# --- bridges declared in mesh.yaml ----------------------------------------------------------
BRIDGE_KEY = "sk-e2e-yaml-bridge-1a2b3c4d"


def _bridge_yaml(path: Path, port: int, base_url: str, key_env: str) -> Path:
    path.write_text(
        f"""
router:
  listen: 127.0.0.1:{port}
nodes: []
bridges:
  - id: e2e-bridge
    provider: openai-compatible
    model: fault-model
    base_url: {base_url}/v1
    api_key_env: {key_env}
    price: {{input: 0.5, output: 1.5}}
    retry: {{max_attempts: 1}}
"""
    )
    return path


async def test_up_starts_a_bridge_from_mesh_yaml(
    tmp_path: Path, fault_injector: FaultInjector
) -> None:
    # The external API is the scripted fault injector, answering like an OpenAI server.
    completion = {
        "id": "chatcmpl-e2e",
        "object": "chat.completion",
        "created": 0,
        "model": "fault-model",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Paris."},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15},
    }
    fault_injector.play(Reply(200, body=completion))
    port = free_port()
    config = _bridge_yaml(tmp_path / "mesh.yaml", port, fault_injector.base_url, "E2E_BRIDGE_KEY")
    env = {**os.environ, "E2E_BRIDGE_KEY": BRIDGE_KEY, "MESH_API_KEY": ""}
    address = f"127.0.0.1:{port}"
    # Waits run in a thread: the fault injector on this event loop keeps answering the bridge.
    async with start_mesh("up", "--config", str(config), env=env, log=tmp_path / "up.log") as up:
        await up.wait_until_serving_async(address)
        chat = await asyncio.to_thread(
            run_mesh, "chat", "--target", address, "--max-tokens", "8", "Capital of France?",
            env=env, timeout_s=120,
        )  # fmt: skip
        assert chat.returncode == 0, chat.stderr
        assert chat.stdout.strip() == "Paris."
        assert "node=e2e-bridge" in chat.stderr and "provider=openai-compatible" in chat.stderr
    assert up.returncode == 0, up.tail()
    assert BRIDGE_KEY not in up.output()
    headers = {k.lower(): v for k, v in fault_injector.received[0].headers.items()}
    assert headers["authorization"] == f"Bearer {BRIDGE_KEY}"


def test_up_with_a_bridge_key_unset_fails_with_one_clear_line(tmp_path: Path) -> None:
    config = _bridge_yaml(tmp_path / "mesh.yaml", free_port(), "http://127.0.0.1:9", "E2E_UNSET")
    env = {k: v for k, v in os.environ.items() if k != "E2E_UNSET"}
    out = run_mesh("up", "--config", str(config), env=env, timeout_s=120)
    assert out.returncode == 2 and "Traceback" not in out.stderr  # 2: the setup must change
    assert "mesh: bridge e2e-bridge: environment variable E2E_UNSET is not set" in out.stderr


@pytest.mark.parametrize("command", ["router", "up"])
def test_a_listen_address_already_taken_is_one_clear_line(command: str, tmp_path: Path) -> None:
    """A second router on the first one's port: exit 1 naming the address, no traceback."""
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        address = f"127.0.0.1:{taken.getsockname()[1]}"
        config = tmp_path / "mesh.yaml"
        config.write_text(f"router:\n  listen: {address}\n  http: {{listen: 'off'}}\nnodes: []\n")
        out = _mesh(command, "--config", str(config), timeout=120)
    assert out.returncode == 1, out.stderr
    assert "Traceback" not in out.stderr
    (line,) = [line for line in out.stderr.splitlines() if line.startswith("mesh: ")]
    assert line.startswith(f"mesh: router could not listen on {address}: the port is taken"), line
