"""The caller's mistakes get INVALID_ARGUMENT / NOT_FOUND with short statuses, never INTERNAL
or a status too big to arrive (issue 14, item 6).

A real router (guards on, an admin key, the real audit log) over one fake-engine node (a test
engine, named as such: the router's own error handling is under test).
"""

from __future__ import annotations

import base64
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import grpc
import grpc.aio
import pytest
from google.protobuf import timestamp_pb2

from mesh.config import (
    CacheSettings,
    EstimatorSettings,
    GuardSettings,
    LedgerSettings,
    NodeConfig,
    RouterConfig,
    RoutingSettings,
)
from mesh.contract.status import error_details
from mesh.router.app import RouterRuntime
from mesh.v1 import inference_pb2, inference_pb2_grpc, policy_pb2, policy_pb2_grpc, types_pb2
from nodes.engines.fake import FakeEngine
from nodes.runtime import NodeRuntime
from tests.helpers import request

pytestmark = pytest.mark.timeout(60)

ADMIN_KEY = "admin-key-for-caller-error-tests"
ADMIN = (("x-admin-key", ADMIN_KEY),)
# Everything a status carries travels in HTTP/2 trailers; a client refuses them above 8 KiB.
SHORT = 1024


@dataclass
class Router:
    runtime: RouterRuntime
    channel: grpc.aio.Channel

    @property
    def inference(self) -> inference_pb2_grpc.InferenceServiceStub:
        return inference_pb2_grpc.InferenceServiceStub(self.channel)

    @property
    def policy(self) -> policy_pb2_grpc.PolicyServiceStub:
        return policy_pb2_grpc.PolicyServiceStub(self.channel)


@pytest.fixture(scope="module")
async def router() -> AsyncIterator[Router]:
    data = tempfile.mkdtemp(prefix="mesh-caller-errors-")
    node = NodeRuntime(NodeConfig(id="n1", engine="fake", model="fake-model"), FakeEngine())
    await node.start()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MESH_ADMIN_KEY", ADMIN_KEY)
        runtime = RouterRuntime(
            RouterConfig(
                listen="127.0.0.1:0",
                guards=GuardSettings(audit_url=f"sqlite+aiosqlite:///{data}/audit.db"),
                cache=CacheSettings(enabled=False),
                ledger=LedgerSettings(url=f"sqlite+aiosqlite:///{data}/ledger.db"),
                routing=RoutingSettings(estimator=EstimatorSettings(embeddings=False)),
            )
        )
        runtime.add_upstream("n1", node.address)
        await runtime.start()
    try:
        async with grpc.aio.insecure_channel(runtime.address) as channel:
            yield Router(runtime, channel)
    finally:
        await runtime.stop(0)
        await node.stop(0)


async def _failure(call: Any) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call
    return info.value


async def test_a_one_megabyte_model_name_is_not_found_with_a_short_message(router: Router) -> None:
    huge = "m" * 1_000_000
    err = await _failure(router.inference.Generate(request("hello", model=huge), timeout=20))
    assert err.code() == grpc.StatusCode.NOT_FOUND, err.details()
    details = error_details(err)
    assert details.reason == "MODEL_NOT_FOUND"
    assert len(details.message) < 300 and details.message.startswith("no node serves model 'mmm")
    assert "more chars" in details.message, "the cut is marked"
    assert all(len(v) <= 256 for v in details.metadata.values())
    # The router is fine afterwards.
    reply = await router.inference.Generate(request("hello"), timeout=20)
    assert reply.text


async def test_every_problem_of_a_huge_request_still_arrives_as_a_short_status(
    router: Router,
) -> None:
    """1,024 empty messages: one violation each, all reported at once, within trailer limits."""
    req = inference_pb2.GenerateRequest(
        messages=[types_pb2.ChatMessage(role=types_pb2.ROLE_USER, content=" ")] * 1024
    )
    err = await _failure(router.inference.Generate(req, timeout=20))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, err.details()
    details = error_details(err)
    assert len((err.details() or "").encode()) <= SHORT
    assert details.violations[0].field == "messages[0].content"
    assert details.violations[-1].description.endswith("more not shown")


@pytest.mark.parametrize(
    ("seconds", "nanos"),
    [
        (253_402_300_800, 0),  # 10000-01-01: past what a datetime holds
        (-62_135_596_801, 0),  # before 0001-01-01
        (2**62, 0),
        (0, 1_000_000_000),  # nanos out of range
        (0, -1),
    ],
)
async def test_an_out_of_range_since_is_invalid_argument(
    router: Router, seconds: int, nanos: int
) -> None:
    since = timestamp_pb2.Timestamp(seconds=seconds, nanos=nanos)
    err = await _failure(
        router.policy.ListGuardDecisions(
            policy_pb2.ListGuardDecisionsRequest(since=since), metadata=ADMIN, timeout=10
        )
    )
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, err.details()
    assert [v.field for v in error_details(err).violations] == ["since"]


@pytest.mark.parametrize(
    "token",
    [
        "x",
        "é",
        base64.urlsafe_b64encode(b"99999-01-01|x").decode(),
        base64.urlsafe_b64encode(b"\xff\xfe|x").decode(),
        base64.urlsafe_b64encode(b"9999-12-31T23:00:00-05:00|x").decode(),  # UTC overflows
    ],
)
async def test_a_foreign_page_token_is_invalid_argument(router: Router, token: str) -> None:
    err = await _failure(
        router.policy.ListGuardDecisions(
            policy_pb2.ListGuardDecisionsRequest(page_token=token), metadata=ADMIN, timeout=10
        )
    )
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, err.details()
    assert [v.field for v in error_details(err).violations] == ["page_token"]


async def test_valid_audit_queries_still_answer(router: Router) -> None:
    since = timestamp_pb2.Timestamp(seconds=1_700_000_000)
    reply = await router.policy.ListGuardDecisions(
        policy_pb2.ListGuardDecisionsRequest(since=since, page_size=5), metadata=ADMIN, timeout=10
    )
    assert reply.next_page_token == ""


@pytest.mark.parametrize("policy_yaml", ["[" * 100_000, "a: " + "{b: " * 5000 + "1" + "}" * 5000])
async def test_deeply_nested_policy_yaml_is_an_invalid_policy(
    router: Router, policy_yaml: str
) -> None:
    for call in (
        router.policy.ApplyPolicy(
            policy_pb2.ApplyPolicyRequest(policy_yaml=policy_yaml, dry_run=True),
            metadata=ADMIN,
            timeout=20,
        ),
        router.policy.EvaluateGuards(
            policy_pb2.EvaluateGuardsRequest(
                text="hi", stage=types_pb2.GUARD_STAGE_INPUT, policy_yaml=policy_yaml
            ),
            metadata=ADMIN,
            timeout=20,
        ),
    ):
        err = await _failure(call)
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, err.details()
        assert error_details(err).reason == "INVALID_POLICY"


async def test_hostile_routing_hints_and_request_ids_are_invalid_argument(router: Router) -> None:
    """Through the router: each refused with its field, and the router answers afterwards."""
    cases: dict[str, Any] = {
        "routing.max_cost_usd": lambda r: setattr(r.routing, "max_cost_usd", float("nan")),
        "routing.require_capabilities": lambda r: r.routing.require_capabilities.extend(
            [f"c{i}" for i in range(10_000)]
        ),
        "request_id": lambda r: setattr(r, "request_id", 'forged\n{"level": "INFO"}'),
    }
    for field, spoil in cases.items():
        req = request("hello")
        spoil(req)
        err = await _failure(router.inference.Generate(req, timeout=20))
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, (field, err.details())
        assert [v.field for v in error_details(err).violations] == [field]
    reply = await router.inference.Generate(request("hello"), timeout=20)
    assert reply.text
