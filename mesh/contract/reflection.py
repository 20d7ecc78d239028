"""Server reflection under both names clients ask for: grpc.reflection.v1 and v1alpha.

grpcio-reflection (1.85) implements only v1alpha (grpc/grpc#38576, open), while current
clients ask for v1 (grpcurl tries it first; grpc-java deprecated v1alpha). v1 is v1alpha's
messages, field for field, under a new package name, so the wire format is the same: one
servicer answers both, the v1 method decoding with the v1alpha message classes. The v1 schema is
added to the descriptor pool as well, so a client that describes
grpc.reflection.v1.ServerReflection gets its definition like any other service's.

Once grpcio-reflection ships a v1 servicer, register that instead and drop this module.
"""

from __future__ import annotations

from collections.abc import Sequence

import grpc
import grpc.aio
from google.protobuf import descriptor_pb2, descriptor_pool
from grpc_reflection.v1alpha import reflection, reflection_pb2, reflection_pb2_grpc

V1ALPHA_SERVICE: str = reflection.SERVICE_NAME  # grpc.reflection.v1alpha.ServerReflection
V1_SERVICE = "grpc.reflection.v1.ServerReflection"
V1_FILE = "grpc/reflection/v1/reflection.proto"
_V1ALPHA_PREFIX = ".grpc.reflection.v1alpha."
_V1_PREFIX = ".grpc.reflection.v1."


def v1_file_descriptor() -> descriptor_pb2.FileDescriptorProto:
    """grpc/reflection/v1/reflection.proto: the v1alpha file with the v1 package and options."""
    proto = descriptor_pb2.FileDescriptorProto()
    reflection_pb2.DESCRIPTOR.CopyToProto(proto)
    proto.name = V1_FILE
    proto.package = "grpc.reflection.v1"

    def renamed(type_name: str) -> str:
        return _V1_PREFIX + type_name.removeprefix(_V1ALPHA_PREFIX)

    for message in proto.message_type:
        for field in message.field:
            if field.type_name:  # set only on message fields (an empty one is still "set")
                field.type_name = renamed(field.type_name)
    for service in proto.service:
        for method in service.method:
            method.input_type = renamed(method.input_type)
            method.output_type = renamed(method.output_type)
    proto.options.java_package = "io.grpc.reflection.v1"
    proto.options.go_package = "google.golang.org/grpc/reflection/grpc_reflection_v1"
    proto.options.ClearField("deprecated")  # v1alpha is the deprecated one
    return proto


def _add_v1_schema(pool: descriptor_pool.DescriptorPool) -> None:
    """Once per process; a v1 schema already there (generated code) stays as it is."""
    try:
        pool.FindServiceByName(V1_SERVICE)
    except KeyError:
        pool.AddSerializedFile(v1_file_descriptor().SerializeToString())


def enable_reflection(server: grpc.aio.Server, service_names: Sequence[str]) -> None:
    """Serve reflection for `service_names` (plus both reflection services) under v1 and v1alpha."""
    _add_v1_schema(descriptor_pool.Default())
    servicer = reflection.aio.ReflectionServicer((*service_names, V1_SERVICE, V1ALPHA_SERVICE))
    reflection_pb2_grpc.add_ServerReflectionServicer_to_server(servicer, server)
    v1_method = grpc.stream_stream_rpc_method_handler(
        servicer.ServerReflectionInfo,
        request_deserializer=reflection_pb2.ServerReflectionRequest.FromString,
        response_serializer=reflection_pb2.ServerReflectionResponse.SerializeToString,
    )
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(V1_SERVICE, {"ServerReflectionInfo": v1_method}),)
    )
