"""Reflection on a real mesh server through both protocol versions clients use.

Current clients ask for grpc.reflection.v1 (grpcurl tries it first), older ones for v1alpha.
The node here runs the fake engine: reflection is the server wiring every mesh process shares
(mesh.contract.serving), not the engine.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc.aio
import pytest
from google.protobuf import descriptor_pb2
from grpc_reflection.v1alpha import reflection_pb2

from mesh.config import NodeConfig
from nodes.engines.fake import FakeEngine
from nodes.runtime import NodeRuntime
from tests.helpers import REFLECTION_V1, REFLECTION_V1ALPHA, reflected_services, reflection_reply


@pytest.fixture
async def channel() -> AsyncIterator[grpc.aio.Channel]:
    node = NodeRuntime(
        NodeConfig(id="reflect-node", engine="fake", model="fake-model"),
        FakeEngine(model_id="fake-model"),
    )
    await node.start()
    async with grpc.aio.insecure_channel(node.address) as channel:
        yield channel
    await node.stop(grace_s=0)


async def _files(
    channel: grpc.aio.Channel, symbol: str
) -> dict[str, descriptor_pb2.FileDescriptorProto]:
    """The files a v1 `file_containing_symbol` request returns, by name."""
    request = reflection_pb2.ServerReflectionRequest(file_containing_symbol=symbol)
    reply = await reflection_reply(channel, request, method=REFLECTION_V1)
    assert reply.HasField("file_descriptor_response"), reply
    files = [
        descriptor_pb2.FileDescriptorProto.FromString(raw)
        for raw in reply.file_descriptor_response.file_descriptor_proto
    ]
    return {f.name: f for f in files}


async def test_services_are_listed_through_v1_and_v1alpha(channel: grpc.aio.Channel) -> None:
    v1 = await reflected_services(channel, method=REFLECTION_V1)
    v1alpha = await reflected_services(channel, method=REFLECTION_V1ALPHA)
    assert v1 == v1alpha
    assert {
        "mesh.v1.InferenceService",
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
        "grpc.reflection.v1alpha.ServerReflection",
    } <= v1


async def test_v1_describes_the_mesh_services(channel: grpc.aio.Channel) -> None:
    files = await _files(channel, "mesh.v1.InferenceService")
    inference = files["mesh/v1/inference.proto"]
    assert inference.package == "mesh.v1"
    assert "Generate" in [m.name for m in inference.service[0].method]


async def test_v1_describes_itself_as_upstream_defines_it(channel: grpc.aio.Channel) -> None:
    # Field numbers and types from grpc-proto's grpc/reflection/v1/reflection.proto.
    v1 = (await _files(channel, "grpc.reflection.v1.ServerReflection"))[
        "grpc/reflection/v1/reflection.proto"
    ]
    assert v1.package == "grpc.reflection.v1" and not v1.options.deprecated
    assert v1.options.java_package == "io.grpc.reflection.v1"
    (method,) = v1.service[0].method
    assert (v1.service[0].name, method.name) == ("ServerReflection", "ServerReflectionInfo")
    assert method.input_type == ".grpc.reflection.v1.ServerReflectionRequest"
    assert method.output_type == ".grpc.reflection.v1.ServerReflectionResponse"
    assert method.client_streaming and method.server_streaming
    messages = {m.name: {f.name: (f.number, f.type_name) for f in m.field} for m in v1.message_type}
    assert messages["ServerReflectionRequest"] == {
        "host": (1, ""),
        "file_by_filename": (3, ""),
        "file_containing_symbol": (4, ""),
        "file_containing_extension": (5, ".grpc.reflection.v1.ExtensionRequest"),
        "all_extension_numbers_of_type": (6, ""),
        "list_services": (7, ""),
    }
    assert messages["ServerReflectionResponse"] == {
        "valid_host": (1, ""),
        "original_request": (2, ".grpc.reflection.v1.ServerReflectionRequest"),
        "file_descriptor_response": (4, ".grpc.reflection.v1.FileDescriptorResponse"),
        "all_extension_numbers_response": (5, ".grpc.reflection.v1.ExtensionNumberResponse"),
        "list_services_response": (6, ".grpc.reflection.v1.ListServiceResponse"),
        "error_response": (7, ".grpc.reflection.v1.ErrorResponse"),
    }
    assert set(messages) == {
        "ServerReflectionRequest",
        "ExtensionRequest",
        "ServerReflectionResponse",
        "FileDescriptorResponse",
        "ExtensionNumberResponse",
        "ListServiceResponse",
        "ServiceResponse",
        "ErrorResponse",
    }
