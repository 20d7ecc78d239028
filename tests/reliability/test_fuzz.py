"""Fuzz: hostile bytes on every RPC of every server the mesh runs, each answered by a clear status.

Three real servers on loopback: a router (guards with the shipped policy, API keys, an admin
key, token registration, ledger and audit log), a node on FakeEngine (a deterministic test
engine, named as such) and an OpenAI bridge whose provider is the fault injector answering with
a canned completion. Every RPC each serves (mesh.v1 InferenceService, RegistryService and
PolicyService, grpc.health.v1, reflection v1 and v1alpha) is called through a raw channel (bytes
as they are, no serializer) with:

- hypothesis: random bytes and mutated valid requests, in concurrent batches;
- structural cases: bytes that are not UTF-8 in every string field at any depth, extreme scalars,
  100,000-element repeated fields, 1 MiB and 5 MiB strings, groups nested past protobuf's limit.

Half the batches carry every credential (so the bytes reach the handlers), half none (an
attacker's view). Every answer must be OK or a status that says what is wrong: never UNKNOWN
or INTERNAL from the mesh's code, never a hang to the deadline. grpc's own UNKNOWN for
undecodable reflection requests is allowed (reflection streams its requests, which
mesh.contract.undecodable documents grpc keeps handling). After each batch the server's
health must still say SERVING. Counts are bounded by MESH_FUZZ_EXAMPLES.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

import grpc
import grpc.aio
import pytest
from google.protobuf.message import Message as ProtoMessage
from grpc_health.v1 import health_pb2
from grpc_reflection.v1alpha import reflection_pb2
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mesh.config import (
    ApiKeyConfig,
    AuthSettings,
    BridgeConfig,
    CacheSettings,
    EstimatorSettings,
    GuardSettings,
    LedgerSettings,
    ModelPrice,
    NodeConfig,
    RegistrySettings,
    RetryPolicy,
    RouterConfig,
    RoutingSettings,
)
from mesh.contract.node_token import NODE_TOKEN_HEADER
from mesh.router.app import RouterRuntime
from mesh.router.auth import hash_api_key
from mesh.v1 import inference_pb2, policy_pb2, registry_pb2, types_pb2
from nodes.bridges.runtime import BridgeRuntime
from nodes.engines.fake import FakeEngine
from nodes.runtime import NodeRuntime
from tests.fixtures.fault_injector import Answer, FaultInjector
from tests.helpers import health_status
from tests.reliability.fuzz_inputs import decodes, payloads, structural_cases
from tests.reliability.load import FUZZ_EXAMPLES
from tests.reliability.scenarios import ScenarioTable

pytestmark = pytest.mark.timeout(600)

API_KEY = "fuzz-tenant-key-7d1e3b9a"
ADMIN_KEY = "fuzz-admin-key-2c8f5a61"
NODE_TOKEN = "fuzz-node-token-9e4b7c2d5f"
BRIDGE_KEY_ENV = "MESH_FUZZ_BRIDGE_KEY"
CREDENTIALS = (
    ("x-api-key", API_KEY),
    ("x-admin-key", ADMIN_KEY),
    (NODE_TOKEN_HEADER, NODE_TOKEN),
)
CALL_DEADLINE_S = 20.0
BATCH = 8  # calls sent at once, then a health check
# A status that says nothing about what was wrong with the request, or a hang.
UNCLEAR = {
    grpc.StatusCode.UNKNOWN,
    grpc.StatusCode.INTERNAL,
    grpc.StatusCode.DATA_LOSS,
    grpc.StatusCode.DEADLINE_EXCEEDED,
}


@dataclass(frozen=True)
class Rpc:
    """One method as the fuzz calls it."""

    method: str
    request_type: type[ProtoMessage]
    kind: str  # "unary" | "server_stream" | "bidi"
    seeds: tuple[ProtoMessage, ...]
    first_only: bool = False  # a stream that stays open (Health.Watch): one answer is enough

    @property
    def seed_bytes(self) -> list[bytes]:
        return [s.SerializeToString() for s in self.seeds]


def _chat(text: str) -> list[types_pb2.ChatMessage]:
    return [types_pb2.ChatMessage(role=types_pb2.ROLE_USER, content=text)]


_SAMPLING = types_pb2.SamplingParams(max_tokens=8, temperature=0.5, stop=["end"])
_ROUTING = types_pb2.RoutingHints(model="fake-model", require_capabilities=["chat"])
INFERENCE = [
    Rpc(
        "/mesh.v1.InferenceService/Generate",
        inference_pb2.GenerateRequest,
        "unary",
        (
            inference_pb2.GenerateRequest(messages=_chat("What is the capital of France?")),
            inference_pb2.GenerateRequest(
                messages=_chat("hello there"), sampling=_SAMPLING, routing=_ROUTING
            ),
        ),
    ),
    Rpc(
        "/mesh.v1.InferenceService/GenerateStream",
        inference_pb2.GenerateStreamRequest,
        "server_stream",
        (
            inference_pb2.GenerateStreamRequest(messages=_chat("Count to five.")),
            inference_pb2.GenerateStreamRequest(
                messages=_chat("stream this"), sampling=_SAMPLING, routing=_ROUTING
            ),
        ),
    ),
    Rpc(
        "/mesh.v1.InferenceService/ListModels",
        inference_pb2.ListModelsRequest,
        "unary",
        (inference_pb2.ListModelsRequest(),),
    ),
]
_CARD = types_pb2.ModelCard(
    model_id="fuzz-model", provider="self-hosted", tier=types_pb2.MODEL_TIER_SMALL
)
REGISTRY = [
    Rpc(
        "/mesh.v1.RegistryService/Register",
        registry_pb2.RegisterRequest,
        "unary",
        (registry_pb2.RegisterRequest(node_id="fuzz", address="127.0.0.1:9", models=[_CARD]),),
    ),
    Rpc(
        "/mesh.v1.RegistryService/Heartbeat",
        registry_pb2.HeartbeatRequest,
        "unary",
        (registry_pb2.HeartbeatRequest(node_id="fuzz", load=types_pb2.NodeLoad(running=1)),),
    ),
    Rpc(
        "/mesh.v1.RegistryService/Deregister",
        registry_pb2.DeregisterRequest,
        "unary",
        (registry_pb2.DeregisterRequest(node_id="fuzz"),),
    ),
    Rpc(
        "/mesh.v1.RegistryService/ListNodes",
        registry_pb2.ListNodesRequest,
        "unary",
        (registry_pb2.ListNodesRequest(page_size=2, page_token="x"),),
    ),
]
POLICY = [
    Rpc(
        "/mesh.v1.PolicyService/GetPolicy",
        policy_pb2.GetPolicyRequest,
        "unary",
        (policy_pb2.GetPolicyRequest(),),
    ),
    Rpc(
        "/mesh.v1.PolicyService/ApplyPolicy",
        policy_pb2.ApplyPolicyRequest,
        "unary",
        (policy_pb2.ApplyPolicyRequest(policy_yaml="guards: []\n", dry_run=True),),
    ),
    Rpc(
        "/mesh.v1.PolicyService/EvaluateGuards",
        policy_pb2.EvaluateGuardsRequest,
        "unary",
        (
            policy_pb2.EvaluateGuardsRequest(
                text="my email is a@b.example", stage=types_pb2.GUARD_STAGE_INPUT
            ),
        ),
    ),
    Rpc(
        "/mesh.v1.PolicyService/ListGuardDecisions",
        policy_pb2.ListGuardDecisionsRequest,
        "unary",
        (policy_pb2.ListGuardDecisionsRequest(page_size=3, tenant="t"),),
    ),
]
COMMON = [
    Rpc(
        "/grpc.health.v1.Health/Check",
        health_pb2.HealthCheckRequest,
        "unary",
        (health_pb2.HealthCheckRequest(), health_pb2.HealthCheckRequest(service="x")),
    ),
    Rpc(
        "/grpc.health.v1.Health/Watch",
        health_pb2.HealthCheckRequest,
        "server_stream",
        (health_pb2.HealthCheckRequest(),),
        first_only=True,
    ),
    *(
        Rpc(
            f"/grpc.reflection.{version}.ServerReflection/ServerReflectionInfo",
            reflection_pb2.ServerReflectionRequest,
            "bidi",
            (
                reflection_pb2.ServerReflectionRequest(list_services=""),
                reflection_pb2.ServerReflectionRequest(
                    file_containing_symbol="mesh.v1.InferenceService"
                ),
            ),
        )
        for version in ("v1", "v1alpha")
    ),
]
RPCS = {
    "router": [*INFERENCE, *REGISTRY, *POLICY, *COMMON],
    "node": [*INFERENCE, *COMMON],
    "bridge": [*INFERENCE, *COMMON],
}
ALL = [(server, rpc) for server, rpcs in RPCS.items() for rpc in rpcs]
ALL_IDS = [f"{server}-{rpc.method.strip('/').replace('/', '.')}" for server, rpc in ALL]


@pytest.fixture(scope="module")
async def servers(
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[dict[str, grpc.aio.Channel]]:
    """The three servers, one channel to each (module-scoped: hypothesis runs many examples)."""
    data = tmp_path_factory.mktemp("fuzz")
    token_file = data / "node-token"
    token_file.write_text(NODE_TOKEN)
    async with contextlib.AsyncExitStack() as stack:
        injector = FaultInjector()
        injector.default = Answer()
        await injector.start()
        stack.push_async_callback(injector.stop)
        node = NodeRuntime(NodeConfig(id="n1", engine="fake", model="fake-model"), FakeEngine())
        await node.start()
        stack.push_async_callback(node.stop, 0)
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("MESH_ADMIN_KEY", ADMIN_KEY)
            patch.setenv(BRIDGE_KEY_ENV, "sk-fuzz-provider-key")
            bridge = BridgeRuntime(
                BridgeConfig(
                    id="bridge",
                    provider="openai-compatible",
                    model="fake-model",
                    base_url=injector.base_url + "/v1",
                    api_key_env=BRIDGE_KEY_ENV,
                    context_window=4096,
                    price=ModelPrice(input=0.1, output=0.2),
                    retry=RetryPolicy(max_attempts=1),
                ),
                health_interval_s=0.5,
            )
            await bridge.start()
            stack.push_async_callback(bridge.stop, 0)
            router = RouterRuntime(
                RouterConfig(
                    listen="127.0.0.1:0",
                    auth=AuthSettings(
                        api_keys=[ApiKeyConfig(name="t", sha256=hash_api_key(API_KEY), tenant="t")]
                    ),
                    guards=GuardSettings(watch=False, audit_url=f"sqlite+aiosqlite:///{data}/a.db"),
                    cache=CacheSettings(semantic=False),
                    ledger=LedgerSettings(url=f"sqlite+aiosqlite:///{data}/ledger.db"),
                    routing=RoutingSettings(estimator=EstimatorSettings(embeddings=False)),
                    registry=RegistrySettings(token_file=token_file),
                )
            )
            router.add_upstream("n1", node.address)
            await router.start()
            stack.push_async_callback(router.stop, 0)
        channels = {}
        for name, address in (
            ("router", router.address),
            ("node", node.address),
            ("bridge", bridge.address),
        ):
            channels[name] = await stack.enter_async_context(grpc.aio.insecure_channel(address))
        yield channels


async def _call(
    channel: grpc.aio.Channel, rpc: Rpc, raw: bytes, metadata: Sequence[tuple[str, str]]
) -> grpc.aio.AioRpcError | None:
    """One raw call; its error, or None when it answered."""
    try:
        if rpc.kind == "unary":
            await channel.unary_unary(rpc.method)(raw, timeout=CALL_DEADLINE_S, metadata=metadata)
        elif rpc.kind == "server_stream":
            call = channel.unary_stream(rpc.method)(raw, timeout=CALL_DEADLINE_S, metadata=metadata)
            async for _ in call:
                if rpc.first_only:
                    call.cancel()
                    break
        else:
            async for _ in channel.stream_stream(rpc.method)(
                iter([raw]), timeout=CALL_DEADLINE_S, metadata=metadata
            ):
                pass
    except grpc.aio.AioRpcError as err:
        return err
    return None


def _unclear(rpc: Rpc, raw: bytes, err: grpc.aio.AioRpcError | None) -> str | None:
    """Why this answer is not a clear status, or None."""
    if err is None:
        return None
    code = err.code()
    if (
        rpc.kind == "bidi"
        and code == grpc.StatusCode.UNKNOWN
        and not decodes(rpc.request_type, raw)
    ):
        return None  # grpc's own answer for a streamed request it cannot decode (documented)
    if code in UNCLEAR:
        return f"{code.name}: {err.details()}"
    if rpc.method.startswith("/mesh.v1.") and not (err.details() or "").strip():
        # (grpc.health.v1 answers an unknown service with a bare NOT_FOUND, as its spec says)
        return f"{code.name} with no message"
    return None


async def _batch(
    channel: grpc.aio.Channel,
    rpc: Rpc,
    cases: Sequence[tuple[str, bytes]],
    metadata: Sequence[tuple[str, str]],
    scenarios: ScenarioTable,
    server: str,
) -> list[str]:
    """Send `cases` at once; what went wrong (with the case), then a health check."""
    scenario = scenarios(f"fuzz: {server}")

    async def one(what: str, raw: bytes) -> str | None:
        start = time.monotonic()
        err = await _call(channel, rpc, raw, metadata)
        why = _unclear(rpc, raw, err)
        scenario.record(time.monotonic() - start, ok=err is None, expected=why is None)
        return None if why is None else f"{rpc.method} {what} ({len(raw)} bytes): {why}"

    problems = [p for p in await asyncio.gather(*(one(w, r) for w, r in cases)) if p]
    assert await health_status(channel) == "SERVING", f"{server} not SERVING after {rpc.method}"
    return problems


@pytest.mark.parametrize(("server", "rpc"), ALL, ids=ALL_IDS)
async def test_structural_cases_get_clear_statuses(
    servers: dict[str, grpc.aio.Channel], server: str, rpc: Rpc, scenarios: ScenarioTable
) -> None:
    cases = [(c.what, c.raw) for c in structural_cases(rpc.request_type, rpc.seed_bytes[0])]
    problems: list[str] = []
    for i in range(0, len(cases), BATCH):
        problems += await _batch(
            servers[server], rpc, cases[i : i + BATCH], CREDENTIALS, scenarios, server
        )
    assert not problems, problems[:10]


@pytest.mark.parametrize(("server", "rpc"), ALL, ids=ALL_IDS)
@settings(
    max_examples=FUZZ_EXAMPLES,
    deadline=None,
    database=None,  # nothing written to the working tree
    derandomize=True,  # the same examples on every run: a failure reproduces
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(data=st.data())
async def test_random_and_mutated_bytes_get_clear_statuses(
    servers: dict[str, grpc.aio.Channel],
    server: str,
    rpc: Rpc,
    scenarios: ScenarioTable,
    data: st.DataObject,
) -> None:
    batch = data.draw(st.lists(payloads(rpc.seed_bytes), min_size=1, max_size=BATCH), "batch")
    metadata = CREDENTIALS if data.draw(st.booleans(), "credentials") else ()
    cases = [(f"#{i}", raw) for i, raw in enumerate(batch)]
    problems = await _batch(servers[server], rpc, cases, metadata, scenarios, server)
    assert not problems, problems
