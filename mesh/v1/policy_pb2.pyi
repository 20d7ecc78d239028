import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from mesh.v1 import types_pb2 as _types_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class GetPolicyRequest(_message.Message):
    __slots__ = ("tenant",)
    TENANT_FIELD_NUMBER: _ClassVar[int]
    tenant: str
    def __init__(self, tenant: _Optional[str] = ...) -> None: ...

class GetPolicyResponse(_message.Message):
    __slots__ = ("version", "policy_yaml", "applied_at", "source")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    POLICY_YAML_FIELD_NUMBER: _ClassVar[int]
    APPLIED_AT_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    version: str
    policy_yaml: str
    applied_at: _timestamp_pb2.Timestamp
    source: str
    def __init__(self, version: _Optional[str] = ..., policy_yaml: _Optional[str] = ..., applied_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., source: _Optional[str] = ...) -> None: ...

class ApplyPolicyRequest(_message.Message):
    __slots__ = ("policy_yaml", "dry_run")
    POLICY_YAML_FIELD_NUMBER: _ClassVar[int]
    DRY_RUN_FIELD_NUMBER: _ClassVar[int]
    policy_yaml: str
    dry_run: bool
    def __init__(self, policy_yaml: _Optional[str] = ..., dry_run: _Optional[bool] = ...) -> None: ...

class ApplyPolicyResponse(_message.Message):
    __slots__ = ("version", "applied", "previous_version")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    APPLIED_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_VERSION_FIELD_NUMBER: _ClassVar[int]
    version: str
    applied: bool
    previous_version: str
    def __init__(self, version: _Optional[str] = ..., applied: _Optional[bool] = ..., previous_version: _Optional[str] = ...) -> None: ...

class EvaluateGuardsRequest(_message.Message):
    __slots__ = ("text", "stage", "tenant", "policy_yaml")
    TEXT_FIELD_NUMBER: _ClassVar[int]
    STAGE_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    POLICY_YAML_FIELD_NUMBER: _ClassVar[int]
    text: str
    stage: _types_pb2.GuardStage
    tenant: str
    policy_yaml: str
    def __init__(self, text: _Optional[str] = ..., stage: _Optional[_Union[_types_pb2.GuardStage, str]] = ..., tenant: _Optional[str] = ..., policy_yaml: _Optional[str] = ...) -> None: ...

class EvaluateGuardsResponse(_message.Message):
    __slots__ = ("verdicts", "action", "redacted_text", "policy_version")
    VERDICTS_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    REDACTED_TEXT_FIELD_NUMBER: _ClassVar[int]
    POLICY_VERSION_FIELD_NUMBER: _ClassVar[int]
    verdicts: _containers.RepeatedCompositeFieldContainer[_types_pb2.GuardVerdict]
    action: _types_pb2.GuardAction
    redacted_text: str
    policy_version: str
    def __init__(self, verdicts: _Optional[_Iterable[_Union[_types_pb2.GuardVerdict, _Mapping]]] = ..., action: _Optional[_Union[_types_pb2.GuardAction, str]] = ..., redacted_text: _Optional[str] = ..., policy_version: _Optional[str] = ...) -> None: ...

class GuardDecision(_message.Message):
    __slots__ = ("decision_id", "decide_time", "request_id", "tenant", "verdict", "content_sha256")
    DECISION_ID_FIELD_NUMBER: _ClassVar[int]
    DECIDE_TIME_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    VERDICT_FIELD_NUMBER: _ClassVar[int]
    CONTENT_SHA256_FIELD_NUMBER: _ClassVar[int]
    decision_id: str
    decide_time: _timestamp_pb2.Timestamp
    request_id: str
    tenant: str
    verdict: _types_pb2.GuardVerdict
    content_sha256: str
    def __init__(self, decision_id: _Optional[str] = ..., decide_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., request_id: _Optional[str] = ..., tenant: _Optional[str] = ..., verdict: _Optional[_Union[_types_pb2.GuardVerdict, _Mapping]] = ..., content_sha256: _Optional[str] = ...) -> None: ...

class ListGuardDecisionsRequest(_message.Message):
    __slots__ = ("page_size", "page_token", "tenant", "guard", "since")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    GUARD_FIELD_NUMBER: _ClassVar[int]
    SINCE_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    tenant: str
    guard: str
    since: _timestamp_pb2.Timestamp
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., tenant: _Optional[str] = ..., guard: _Optional[str] = ..., since: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ListGuardDecisionsResponse(_message.Message):
    __slots__ = ("decisions", "next_page_token")
    DECISIONS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    decisions: _containers.RepeatedCompositeFieldContainer[GuardDecision]
    next_page_token: str
    def __init__(self, decisions: _Optional[_Iterable[_Union[GuardDecision, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...
