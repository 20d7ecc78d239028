from mesh.v1 import types_pb2 as _types_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class GenerateRequest(_message.Message):
    __slots__ = ("messages", "sampling", "routing", "request_id")
    MESSAGES_FIELD_NUMBER: _ClassVar[int]
    SAMPLING_FIELD_NUMBER: _ClassVar[int]
    ROUTING_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    messages: _containers.RepeatedCompositeFieldContainer[_types_pb2.ChatMessage]
    sampling: _types_pb2.SamplingParams
    routing: _types_pb2.RoutingHints
    request_id: str
    def __init__(self, messages: _Optional[_Iterable[_Union[_types_pb2.ChatMessage, _Mapping]]] = ..., sampling: _Optional[_Union[_types_pb2.SamplingParams, _Mapping]] = ..., routing: _Optional[_Union[_types_pb2.RoutingHints, _Mapping]] = ..., request_id: _Optional[str] = ...) -> None: ...

class GenerateResponse(_message.Message):
    __slots__ = ("request_id", "text", "finish_reason", "usage", "route", "guard_verdicts", "model")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    FINISH_REASON_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    ROUTE_FIELD_NUMBER: _ClassVar[int]
    GUARD_VERDICTS_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    text: str
    finish_reason: _types_pb2.FinishReason
    usage: _types_pb2.Usage
    route: _types_pb2.RouteInfo
    guard_verdicts: _containers.RepeatedCompositeFieldContainer[_types_pb2.GuardVerdict]
    model: str
    def __init__(self, request_id: _Optional[str] = ..., text: _Optional[str] = ..., finish_reason: _Optional[_Union[_types_pb2.FinishReason, str]] = ..., usage: _Optional[_Union[_types_pb2.Usage, _Mapping]] = ..., route: _Optional[_Union[_types_pb2.RouteInfo, _Mapping]] = ..., guard_verdicts: _Optional[_Iterable[_Union[_types_pb2.GuardVerdict, _Mapping]]] = ..., model: _Optional[str] = ...) -> None: ...

class GenerateStreamRequest(_message.Message):
    __slots__ = ("messages", "sampling", "routing", "request_id")
    MESSAGES_FIELD_NUMBER: _ClassVar[int]
    SAMPLING_FIELD_NUMBER: _ClassVar[int]
    ROUTING_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    messages: _containers.RepeatedCompositeFieldContainer[_types_pb2.ChatMessage]
    sampling: _types_pb2.SamplingParams
    routing: _types_pb2.RoutingHints
    request_id: str
    def __init__(self, messages: _Optional[_Iterable[_Union[_types_pb2.ChatMessage, _Mapping]]] = ..., sampling: _Optional[_Union[_types_pb2.SamplingParams, _Mapping]] = ..., routing: _Optional[_Union[_types_pb2.RoutingHints, _Mapping]] = ..., request_id: _Optional[str] = ...) -> None: ...

class TextDelta(_message.Message):
    __slots__ = ("text",)
    TEXT_FIELD_NUMBER: _ClassVar[int]
    text: str
    def __init__(self, text: _Optional[str] = ...) -> None: ...

class GenerationSummary(_message.Message):
    __slots__ = ("request_id", "finish_reason", "usage", "route", "guard_verdicts", "model")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    FINISH_REASON_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    ROUTE_FIELD_NUMBER: _ClassVar[int]
    GUARD_VERDICTS_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    finish_reason: _types_pb2.FinishReason
    usage: _types_pb2.Usage
    route: _types_pb2.RouteInfo
    guard_verdicts: _containers.RepeatedCompositeFieldContainer[_types_pb2.GuardVerdict]
    model: str
    def __init__(self, request_id: _Optional[str] = ..., finish_reason: _Optional[_Union[_types_pb2.FinishReason, str]] = ..., usage: _Optional[_Union[_types_pb2.Usage, _Mapping]] = ..., route: _Optional[_Union[_types_pb2.RouteInfo, _Mapping]] = ..., guard_verdicts: _Optional[_Iterable[_Union[_types_pb2.GuardVerdict, _Mapping]]] = ..., model: _Optional[str] = ...) -> None: ...

class GenerateStreamResponse(_message.Message):
    __slots__ = ("delta", "summary")
    DELTA_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    delta: TextDelta
    summary: GenerationSummary
    def __init__(self, delta: _Optional[_Union[TextDelta, _Mapping]] = ..., summary: _Optional[_Union[GenerationSummary, _Mapping]] = ...) -> None: ...

class ListModelsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListModelsResponse(_message.Message):
    __slots__ = ("node_id", "models", "load")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    MODELS_FIELD_NUMBER: _ClassVar[int]
    LOAD_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    models: _containers.RepeatedCompositeFieldContainer[_types_pb2.ModelCard]
    load: _types_pb2.NodeLoad
    def __init__(self, node_id: _Optional[str] = ..., models: _Optional[_Iterable[_Union[_types_pb2.ModelCard, _Mapping]]] = ..., load: _Optional[_Union[_types_pb2.NodeLoad, _Mapping]] = ...) -> None: ...
