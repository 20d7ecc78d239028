"""Request bytes that do not decode: a clear status per call, a server that stays SERVING, and
a log of a line or two instead of a traceback per call (issue 14, item 6).

A real router (API keys on: the callers here never authenticate, as an attacker would not)
over a fake-engine node, called through a raw channel that sends bytes as they are.
"""

from __future__ import annotations

import logging
import random
import tempfile
from collections.abc import AsyncIterator

import grpc
import grpc.aio
import pytest
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import DecodeError
from google.protobuf.message import Message as ProtoMessage
from grpc_health.v1 import health_pb2

from mesh.config import (
    ApiKeyConfig,
    AuthSettings,
    CacheSettings,
    EstimatorSettings,
    GuardSettings,
    LedgerSettings,
    NodeConfig,
    RouterConfig,
    RoutingSettings,
)
from mesh.contract import undecodable
from mesh.contract.status import error_details
from mesh.router.app import RouterRuntime
from mesh.router.auth import hash_api_key
from mesh.v1 import inference_pb2, policy_pb2, registry_pb2
from nodes.engines.fake import FakeEngine
from nodes.runtime import NodeRuntime
from tests.helpers import health_status

pytestmark = pytest.mark.timeout(120)

# (method, request type, whether the response streams)
UNARY_REQUEST_METHODS: list[tuple[str, type[ProtoMessage], bool]] = [
    ("/mesh.v1.InferenceService/Generate", inference_pb2.GenerateRequest, False),
    ("/mesh.v1.InferenceService/GenerateStream", inference_pb2.GenerateStreamRequest, True),
    (
        "/mesh.v1.PolicyService/ListGuardDecisions",
        policy_pb2.ListGuardDecisionsRequest,
        False,
    ),
    ("/mesh.v1.RegistryService/Register", registry_pb2.RegisterRequest, False),
    ("/grpc.health.v1.Health/Check", health_pb2.HealthCheckRequest, False),
    # A stream its handler writes with context.write (not an async generator).
    ("/grpc.health.v1.Health/Watch", health_pb2.HealthCheckRequest, True),
]
REFLECTION = "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"


def garbage(rng: random.Random, i: int, request_type: type[ProtoMessage]) -> bytes:
    """Bytes `request_type` does not decode: field number 0, or a string (or message) field
    holding bytes that are not UTF-8 (not a message)."""
    if i % 4 == 3:
        field = next(
            f
            for f in request_type.DESCRIPTOR.fields
            if f.type in (FieldDescriptor.TYPE_STRING, FieldDescriptor.TYPE_MESSAGE)
        )
        return bytes([field.number << 3 | 2, 3]) + b"\xff\xfe\xfd"
    return b"\x07" + rng.randbytes(rng.randrange(0, 64))  # tag 0 (wire type 7) is invalid


@pytest.fixture
async def router() -> AsyncIterator[RouterRuntime]:
    data = tempfile.mkdtemp(prefix="mesh-undecodable-")
    node = NodeRuntime(NodeConfig(id="n1", engine="fake", model="fake-model"), FakeEngine())
    await node.start()
    runtime = RouterRuntime(
        RouterConfig(
            listen="127.0.0.1:0",
            auth=AuthSettings(
                api_keys=[ApiKeyConfig(name="svc", sha256=hash_api_key("k" * 32), tenant="t")]
            ),
            guards=GuardSettings(audit_url=f"sqlite+aiosqlite:///{data}/audit.db"),
            cache=CacheSettings(enabled=False),
            ledger=LedgerSettings(url=f"sqlite+aiosqlite:///{data}/ledger.db"),
            routing=RoutingSettings(estimator=EstimatorSettings(embeddings=False)),
        )
    )
    runtime.add_upstream("n1", node.address)
    await runtime.start()
    try:
        yield runtime
    finally:
        await runtime.stop(0)
        await node.stop(0)


async def test_undecodable_bytes_get_a_status_and_one_log_line(
    router: RouterRuntime, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(undecodable, "THROTTLE", undecodable.Throttle())  # a fresh minute
    caplog.set_level(logging.DEBUG)
    rng = random.Random(14)
    codes: dict[str, set[grpc.StatusCode]] = {}
    async with grpc.aio.insecure_channel(router.address) as channel:
        for i in range(100):
            method, request_type, streams = UNARY_REQUEST_METHODS[i % len(UNARY_REQUEST_METHODS)]
            payload = garbage(rng, i, request_type)
            with pytest.raises(DecodeError):
                request_type.FromString(payload)  # the test's own premise
            with pytest.raises(grpc.aio.AioRpcError) as err:
                if streams:
                    async for _ in channel.unary_stream(method)(payload, timeout=10):
                        pass
                else:
                    await channel.unary_unary(method)(payload, timeout=10)
            codes.setdefault(method, set()).add(err.value.code())
            assert error_details(err.value).reason == "UNDECODABLE_REQUEST"
            assert [v.field for v in error_details(err.value).violations] == ["request"]
        # Reflection streams its requests: grpc keeps answering those itself (UNKNOWN), but
        # its log record is cut down the same way.
        for _ in range(5):
            with pytest.raises(grpc.aio.AioRpcError) as err:
                async for _ in channel.stream_stream(REFLECTION)(iter([b"\x07\xff"]), timeout=10):
                    pass
            assert err.value.code() == grpc.StatusCode.UNKNOWN
        assert await health_status(channel) == "SERVING"

    assert codes == {m: {grpc.StatusCode.INVALID_ARGUMENT} for m, _, _ in UNARY_REQUEST_METHODS}
    loud = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert 1 <= len(loud) <= 3, [r.getMessage() for r in loud]
    assert all(r.exc_info is None and r.levelno == logging.WARNING for r in loud)
    assert "Traceback" not in caplog.text
    assert "do not decode" in loud[0].getMessage()
