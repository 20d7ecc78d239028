"""Traces end to end, through the real processes and the `mesh trace` command.

1. Router and node in separate processes (`mesh router`, `mesh node`), both writing to the
   span store in one MESH_DATA_DIR: one request is one trace, the node's server span hangs
   under the router's attempt span across the process boundary (the attempt span is the only
   CLIENT span of the hop: it carries the trace context itself), a guard chain in which a guard
   acted is one span with an event per acting guard (an all-allow chain is one event on the
   server span), the gen_ai attributes hold the real token counts, and the prompt (with a fake
   AWS key in it) is nowhere in the store.
2. `mesh up`, `mesh chat`, then `mesh trace --last 1` and `mesh trace --request ID --json`.

Both use the transformers engine (real SmolLM2) so they start in seconds.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest

from mesh.telemetry import semconv as sc
from mesh.telemetry.span_store import SpanStore, StoredSpan
from mesh.v1 import inference_pb2, inference_pb2_grpc, types_pb2
from tests.process import free_address, run_mesh, start_mesh

pytestmark = [pytest.mark.model, pytest.mark.timeout(300)]
MODEL = "smollm2-135m-instruct"
GENERATE = "/mesh.v1.InferenceService/Generate"
FAKE_AWS_KEY = "AKIAIOSFODNN7EXAMPLE"  # AWS's documented example key: fake, shaped like a real one
PROMPT_WORD = "Zanzibarian"  # in the prompt, and must be in no span


def _env(data_dir: Path) -> dict[str, str]:
    # One MESH_DATA_DIR for every process: they all write to, and `mesh trace` reads, its
    # traces.db.
    return {**os.environ, "MESH_DATA_DIR": str(data_dir), "MESH_API_KEY": ""}


@contextmanager
def _serving(args: Sequence[str], address: str, env: dict[str, str], log: Path) -> Iterator[None]:
    """A `mesh` server subprocess, ready on `address`; SIGTERM and a clean exit at the end."""
    with start_mesh(*args, env=env, log=log) as server:
        server.wait_until_serving(address)
        yield
    assert server.returncode == 0, server.tail()


def _mesh(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run_mesh(*args, env=_env(data_dir))


def _wait_for_trace(
    store_path: Path, request_id: str, complete: Callable[[list[StoredSpan]], bool]
) -> list[StoredSpan]:
    """The request's trace once `complete` holds (processes export in batches every 0.5 s)."""
    deadline = time.monotonic() + 30
    spans: list[StoredSpan] = []
    while time.monotonic() < deadline:
        if store_path.exists():
            store = SpanStore(store_path)
            trace_ids = store.trace_ids_for_request(request_id)
            assert len(trace_ids) <= 1, f"one trace per request, got {trace_ids}"
            if trace_ids:
                spans = store.trace(trace_ids[0])
                if complete(spans):
                    return spans
        time.sleep(0.25)
    raise AssertionError(f"trace of {request_id} incomplete: {[s.name for s in spans]}")


def _only(spans: Sequence[StoredSpan], what: str, **match: Any) -> StoredSpan:
    found = [s for s in spans if all(getattr(s, k) == v for k, v in match.items())]
    assert len(found) == 1, (what, [(s.name, s.service, s.kind) for s in spans])
    return found[0]


def _ancestors(span: StoredSpan, spans: Sequence[StoredSpan]) -> list[str]:
    by_id = {s.span_id: s for s in spans}
    chain: list[str] = []
    parent = by_id.get(span.parent_id or "")
    while parent is not None:
        chain.append(parent.span_id)
        parent = by_id.get(parent.parent_id or "")
    return chain


# --- 1. router and node in separate processes ------------------------------------------------
@dataclass
class SplitMesh:
    router: str
    node_id: str
    data_dir: Path


@pytest.fixture(scope="module")
def split_mesh(tmp_path_factory: pytest.TempPathFactory, smollm2_path: Path) -> Iterator[SplitMesh]:
    data_dir = tmp_path_factory.mktemp("split-mesh")
    env = _env(data_dir)
    node_address = free_address()
    router_address = free_address()
    node_id = "split-node"
    config = data_dir / "router.yaml"
    config.write_text(
        f"""
router:
  listen: {router_address}
  upstreams:
    - {{id: {node_id}, address: "{node_address}"}}
telemetry:
  prometheus_listen: 127.0.0.1:0
"""
    )
    node_args = ["node", "--engine", "transformers", "--model", MODEL, "--listen", node_address]
    node_args += ["--node-id", node_id, "--price-in", "0.02", "--price-out", "0.04"]
    with (
        _serving(node_args, node_address, env, data_dir / "node.log"),
        _serving(["router", "--config", str(config)], router_address, env, data_dir / "router.log"),
    ):
        yield SplitMesh(router_address, node_id, data_dir)


def _generate_until_routed(address: str, request: inference_pb2.GenerateRequest) -> Any:
    """The router probes upstream health on its own period: retry UNAVAILABLE until it has."""
    deadline = time.monotonic() + 30
    with grpc.insecure_channel(address) as channel:
        stub = inference_pb2_grpc.InferenceServiceStub(channel)
        while True:
            try:
                return stub.Generate(request, timeout=60)
            except grpc.RpcError as err:
                if err.code() != grpc.StatusCode.UNAVAILABLE or time.monotonic() > deadline:
                    raise
                request.request_id += "-retry"  # a new request, so a new trace
                time.sleep(0.5)


def test_one_trace_across_router_and_node_processes(split_mesh: SplitMesh) -> None:
    request = inference_pb2.GenerateRequest(
        messages=[
            types_pb2.ChatMessage(
                role=types_pb2.ROLE_USER,
                content=f"My AWS key is {FAKE_AWS_KEY}. Describe a {PROMPT_WORD} sunset.",
            )
        ],
        sampling=types_pb2.SamplingParams(max_tokens=12, temperature=0.0),
        request_id="split-trace-1",
    )
    reply = _generate_until_routed(split_mesh.router, request)
    assert reply.usage.input_tokens > 5 and reply.usage.output_tokens > 0
    node_service = f"mesh-node-{split_mesh.node_id}"

    def complete(spans: list[StoredSpan]) -> bool:
        services = {(s.service, s.kind, s.name) for s in spans}
        return {("mesh-router", "SERVER", GENERATE), (node_service, "SERVER", GENERATE)} <= (
            services
        ) and any(s.name.startswith("route ") for s in spans)

    store_path = split_mesh.data_dir / "traces.db"
    spans = _wait_for_trace(store_path, request.request_id, complete)
    assert {s.service for s in spans} == {"mesh-router", node_service}

    # Parents across the process boundary:
    # router server -> ... -> route -> chat {model} ~~wire~~> node server.
    router_server = _only(
        spans, "router server span", service="mesh-router", kind="SERVER", name=GENERATE
    )
    assert router_server.parent_id is None
    route = _only([s for s in spans if s.name.startswith("route ")], "route span")
    assert router_server.span_id in _ancestors(route, spans)
    node_server = _only(spans, "node server span", service=node_service, kind="SERVER")
    attempt = _only(spans, "the answering attempt", span_id=node_server.parent_id)
    assert attempt.service == "mesh-router" and attempt.kind == "CLIENT"
    assert attempt.name == f"chat {MODEL}"
    assert attempt.parent_id == route.span_id
    assert [s.name for s in spans if s.kind == "CLIENT"] == [attempt.name], "one per attempt"

    # Guards: the input chain acted (the key was redacted), so it is a span listing every guard,
    # with an event for each guard that acted.
    guard_input = _only(spans, "input guard chain", name="apply_guardrail llm_input")
    assert router_server.span_id in _ancestors(guard_input, spans)
    assert guard_input.attributes[sc.GEN_AI_SECURITY_DECISION_TYPE] == "modify"
    guard_events = {
        e["attributes"][sc.GEN_AI_GUARDIAN_NAME]: e["attributes"]
        for e in guard_input.events
        if e["name"] == sc.GUARD_EVENT
    }
    assert guard_events["secrets"][sc.GEN_AI_SECURITY_FINDING_CATEGORIES] == ["AWS_ACCESS_KEY"]
    names = guard_input.attributes[sc.MESH_GUARD_NAMES]
    assert len(names) == guard_input.attributes[sc.MESH_GUARD_COUNT] >= 4
    assert set(guard_events) <= set(names) and "secrets" in names
    assert {s.name for s in spans if s.name.startswith("apply_guardrail")} <= {
        "apply_guardrail llm_input",
        "apply_guardrail llm_output",
    }, "no span per guard"

    # gen_ai attributes hold the engine's real token counts, on both sides of the hop.
    for span in (attempt, node_server):
        assert span.attributes[sc.GEN_AI_USAGE_INPUT_TOKENS] == reply.usage.input_tokens
        assert span.attributes[sc.GEN_AI_USAGE_OUTPUT_TOKENS] == reply.usage.output_tokens
        assert span.attributes[sc.GEN_AI_RESPONSE_MODEL] == MODEL
    assert attempt.attributes[sc.GEN_AI_OPERATION_NAME] == "chat"
    assert attempt.attributes[sc.GEN_AI_REQUEST_MODEL] == MODEL
    assert attempt.attributes[sc.GEN_AI_PROVIDER_NAME] == "self-hosted"
    assert node_server.attributes[sc.MESH_REQUEST_ID] == request.request_id
    assert not [s.name for s in spans if s.status == "ERROR"]

    # The prompt, secret included, is in no span name, attribute or event, nor in the file.
    for span in spans:
        dumped = json.dumps(span.to_json())
        assert FAKE_AWS_KEY not in dumped and PROMPT_WORD not in dumped, span.name
    for path in store_path.parent.glob("traces.db*"):  # the database and its WAL
        raw = path.read_bytes()
        assert FAKE_AWS_KEY.encode() not in raw and PROMPT_WORD.encode() not in raw, path


# --- 2. mesh up, mesh chat, mesh trace ----------------------------------------------------------
@dataclass
class Embedded:
    router: str
    data_dir: Path


@pytest.fixture(scope="module")
def mesh_up(tmp_path_factory: pytest.TempPathFactory, smollm2_path: Path) -> Iterator[Embedded]:
    data_dir = tmp_path_factory.mktemp("trace-up")
    router = free_address()
    config = data_dir / "mesh.yaml"
    config.write_text(
        f"""
router:
  listen: {router}
nodes:
  - id: trace-node
    engine: transformers
    model: {MODEL}
    input_price_per_mtok: 0.02
    output_price_per_mtok: 0.04
telemetry:
  prometheus_listen: 127.0.0.1:0
"""
    )
    with _serving(["up", "--config", str(config)], router, _env(data_dir), data_dir / "up.log"):
        yield Embedded(router, data_dir)


def test_mesh_trace_shows_the_request_tree(mesh_up: Embedded) -> None:
    chat = _mesh(
        mesh_up.data_dir,
        "chat",
        "--target",
        mesh_up.router,
        "--json",
        "--temperature",
        "0",
        "--max-tokens",
        "12",
        "What is the capital of France?",
    )
    assert chat.returncode == 0, chat.stderr
    reply = json.loads(chat.stdout)
    request_id = reply["requestId"]
    usage_in, usage_out = int(reply["usage"]["inputTokens"]), int(reply["usage"]["outputTokens"])

    def complete(spans: list[StoredSpan]) -> bool:
        servers = [s for s in spans if s.kind == "SERVER" and s.name == GENERATE]
        return len(servers) == 2 and any(s.name == f"chat {MODEL}" for s in spans)

    [trace_id] = {
        s.trace_id for s in _wait_for_trace(mesh_up.data_dir / "traces.db", request_id, complete)
    }

    # --json: the spans with their ids, parents, services, attributes and statuses.
    out = _mesh(mesh_up.data_dir, "trace", "--request", request_id, "--json")
    assert out.returncode == 0, out.stderr
    [payload] = json.loads(out.stdout)
    assert payload["trace_id"] == trace_id
    spans = payload["spans"]
    by_id = {s["span_id"]: s for s in spans}
    servers = [s for s in spans if s["kind"] == "SERVER" and s["name"] == GENERATE]
    [router_server] = [s for s in servers if s["parent_id"] is None]
    [node_server] = [s for s in servers if s["parent_id"] is not None]
    attempt = by_id[node_server["parent_id"]]
    route = by_id[attempt["parent_id"]]
    assert attempt["name"] == f"chat {MODEL}" and attempt["kind"] == "CLIENT"
    assert route["name"].startswith("route ")
    assert attempt["attributes"][sc.GEN_AI_USAGE_OUTPUT_TOKENS] == usage_out
    assert node_server["attributes"][sc.GEN_AI_USAGE_INPUT_TOKENS] == usage_in
    assert router_server["attributes"][sc.MESH_REQUEST_ID] == request_id
    assert {s["service"] for s in spans} == {"mesh"}
    assert all(s["status"] != "ERROR" for s in spans), [(s["name"], s["status"]) for s in spans]
    assert set(spans[0]) >= {"name", "span_id", "parent_id", "service", "attributes", "status"}

    # --last 1: the same trace as a tree an SRE can read.
    out = _mesh(mesh_up.data_dir, "trace", "--last", "1")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].startswith(f"trace {trace_id}") and "services: mesh" in lines[0]
    assert "error" not in lines[0]

    def line_of(text: str, start: int = 0) -> int:
        return next(i for i in range(start, len(lines)) if text in lines[i])

    def depth(i: int) -> int:
        return len(lines[i]) - len(lines[i].lstrip(" │├└─"))

    root = line_of(f"{GENERATE}  [mesh]  server")
    route_line = line_of("route ", root)
    attempt_line = line_of(f"chat {MODEL}  client", route_line)
    node_line = line_of(f"{GENERATE}  server", attempt_line)
    assert depth(root) < depth(route_line) < depth(attempt_line) < depth(node_line)
    assert f"tokens={usage_in}→{usage_out}" in lines[attempt_line]
    assert f"request={request_id}" in lines[root]
    # Every input guard allowed this prompt: the chain is one event line under the server span.
    guard_line = line_of("· guards input: allow", root)
    assert guard_line < route_line and "secrets" in lines[guard_line]
    assert "ERROR" not in out.stdout
