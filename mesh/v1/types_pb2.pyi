import datetime

from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Role(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ROLE_UNSPECIFIED: _ClassVar[Role]
    ROLE_SYSTEM: _ClassVar[Role]
    ROLE_USER: _ClassVar[Role]
    ROLE_ASSISTANT: _ClassVar[Role]

class ModelTier(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MODEL_TIER_UNSPECIFIED: _ClassVar[ModelTier]
    MODEL_TIER_SMALL: _ClassVar[ModelTier]
    MODEL_TIER_MEDIUM: _ClassVar[ModelTier]
    MODEL_TIER_LARGE: _ClassVar[ModelTier]
    MODEL_TIER_FRONTIER: _ClassVar[ModelTier]

class CacheMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CACHE_MODE_UNSPECIFIED: _ClassVar[CacheMode]
    CACHE_MODE_USE: _ClassVar[CacheMode]
    CACHE_MODE_BYPASS: _ClassVar[CacheMode]
    CACHE_MODE_REFRESH: _ClassVar[CacheMode]

class FinishReason(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    FINISH_REASON_UNSPECIFIED: _ClassVar[FinishReason]
    FINISH_REASON_STOP: _ClassVar[FinishReason]
    FINISH_REASON_LENGTH: _ClassVar[FinishReason]
    FINISH_REASON_ABORTED: _ClassVar[FinishReason]
    FINISH_REASON_GUARD_BLOCKED: _ClassVar[FinishReason]

class GuardStage(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    GUARD_STAGE_UNSPECIFIED: _ClassVar[GuardStage]
    GUARD_STAGE_INPUT: _ClassVar[GuardStage]
    GUARD_STAGE_OUTPUT: _ClassVar[GuardStage]

class GuardAction(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    GUARD_ACTION_UNSPECIFIED: _ClassVar[GuardAction]
    GUARD_ACTION_ALLOW: _ClassVar[GuardAction]
    GUARD_ACTION_BLOCK: _ClassVar[GuardAction]
    GUARD_ACTION_REDACT: _ClassVar[GuardAction]
    GUARD_ACTION_FLAG: _ClassVar[GuardAction]

class GuardMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    GUARD_MODE_UNSPECIFIED: _ClassVar[GuardMode]
    GUARD_MODE_ENFORCE: _ClassVar[GuardMode]
    GUARD_MODE_MONITOR: _ClassVar[GuardMode]

class ModelKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MODEL_KIND_UNSPECIFIED: _ClassVar[ModelKind]
    MODEL_KIND_SELF_HOSTED: _ClassVar[ModelKind]
    MODEL_KIND_EXTERNAL: _ClassVar[ModelKind]
ROLE_UNSPECIFIED: Role
ROLE_SYSTEM: Role
ROLE_USER: Role
ROLE_ASSISTANT: Role
MODEL_TIER_UNSPECIFIED: ModelTier
MODEL_TIER_SMALL: ModelTier
MODEL_TIER_MEDIUM: ModelTier
MODEL_TIER_LARGE: ModelTier
MODEL_TIER_FRONTIER: ModelTier
CACHE_MODE_UNSPECIFIED: CacheMode
CACHE_MODE_USE: CacheMode
CACHE_MODE_BYPASS: CacheMode
CACHE_MODE_REFRESH: CacheMode
FINISH_REASON_UNSPECIFIED: FinishReason
FINISH_REASON_STOP: FinishReason
FINISH_REASON_LENGTH: FinishReason
FINISH_REASON_ABORTED: FinishReason
FINISH_REASON_GUARD_BLOCKED: FinishReason
GUARD_STAGE_UNSPECIFIED: GuardStage
GUARD_STAGE_INPUT: GuardStage
GUARD_STAGE_OUTPUT: GuardStage
GUARD_ACTION_UNSPECIFIED: GuardAction
GUARD_ACTION_ALLOW: GuardAction
GUARD_ACTION_BLOCK: GuardAction
GUARD_ACTION_REDACT: GuardAction
GUARD_ACTION_FLAG: GuardAction
GUARD_MODE_UNSPECIFIED: GuardMode
GUARD_MODE_ENFORCE: GuardMode
GUARD_MODE_MONITOR: GuardMode
MODEL_KIND_UNSPECIFIED: ModelKind
MODEL_KIND_SELF_HOSTED: ModelKind
MODEL_KIND_EXTERNAL: ModelKind

class ChatMessage(_message.Message):
    __slots__ = ("role", "content")
    ROLE_FIELD_NUMBER: _ClassVar[int]
    CONTENT_FIELD_NUMBER: _ClassVar[int]
    role: Role
    content: str
    def __init__(self, role: _Optional[_Union[Role, str]] = ..., content: _Optional[str] = ...) -> None: ...

class SamplingParams(_message.Message):
    __slots__ = ("temperature", "top_p", "top_k", "max_tokens", "stop", "seed")
    TEMPERATURE_FIELD_NUMBER: _ClassVar[int]
    TOP_P_FIELD_NUMBER: _ClassVar[int]
    TOP_K_FIELD_NUMBER: _ClassVar[int]
    MAX_TOKENS_FIELD_NUMBER: _ClassVar[int]
    STOP_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    temperature: float
    top_p: float
    top_k: int
    max_tokens: int
    stop: _containers.RepeatedScalarFieldContainer[str]
    seed: int
    def __init__(self, temperature: _Optional[float] = ..., top_p: _Optional[float] = ..., top_k: _Optional[int] = ..., max_tokens: _Optional[int] = ..., stop: _Optional[_Iterable[str]] = ..., seed: _Optional[int] = ...) -> None: ...

class RoutingHints(_message.Message):
    __slots__ = ("model", "max_cost_usd", "min_tier", "latency_slo", "require_capabilities", "allow_external", "cache")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    MAX_COST_USD_FIELD_NUMBER: _ClassVar[int]
    MIN_TIER_FIELD_NUMBER: _ClassVar[int]
    LATENCY_SLO_FIELD_NUMBER: _ClassVar[int]
    REQUIRE_CAPABILITIES_FIELD_NUMBER: _ClassVar[int]
    ALLOW_EXTERNAL_FIELD_NUMBER: _ClassVar[int]
    CACHE_FIELD_NUMBER: _ClassVar[int]
    model: str
    max_cost_usd: float
    min_tier: ModelTier
    latency_slo: _duration_pb2.Duration
    require_capabilities: _containers.RepeatedScalarFieldContainer[str]
    allow_external: bool
    cache: CacheMode
    def __init__(self, model: _Optional[str] = ..., max_cost_usd: _Optional[float] = ..., min_tier: _Optional[_Union[ModelTier, str]] = ..., latency_slo: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., require_capabilities: _Optional[_Iterable[str]] = ..., allow_external: _Optional[bool] = ..., cache: _Optional[_Union[CacheMode, str]] = ...) -> None: ...

class Usage(_message.Message):
    __slots__ = ("input_tokens", "output_tokens", "cached_input_tokens", "cost_usd")
    INPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    CACHED_INPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    COST_USD_FIELD_NUMBER: _ClassVar[int]
    input_tokens: int
    output_tokens: int
    cached_input_tokens: int
    cost_usd: float
    def __init__(self, input_tokens: _Optional[int] = ..., output_tokens: _Optional[int] = ..., cached_input_tokens: _Optional[int] = ..., cost_usd: _Optional[float] = ...) -> None: ...

class RouteCandidate(_message.Message):
    __slots__ = ("node_id", "model", "score", "estimated_cost_usd", "chosen", "rejected_reason")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    ESTIMATED_COST_USD_FIELD_NUMBER: _ClassVar[int]
    CHOSEN_FIELD_NUMBER: _ClassVar[int]
    REJECTED_REASON_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    model: str
    score: float
    estimated_cost_usd: float
    chosen: bool
    rejected_reason: str
    def __init__(self, node_id: _Optional[str] = ..., model: _Optional[str] = ..., score: _Optional[float] = ..., estimated_cost_usd: _Optional[float] = ..., chosen: _Optional[bool] = ..., rejected_reason: _Optional[str] = ...) -> None: ...

class RouteInfo(_message.Message):
    __slots__ = ("node_id", "model", "provider", "policy", "reason", "candidates", "attempts", "cache_hit", "estimated_cost_usd", "baseline_cost_usd", "tier")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    POLICY_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    CANDIDATES_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    CACHE_HIT_FIELD_NUMBER: _ClassVar[int]
    ESTIMATED_COST_USD_FIELD_NUMBER: _ClassVar[int]
    BASELINE_COST_USD_FIELD_NUMBER: _ClassVar[int]
    TIER_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    model: str
    provider: str
    policy: str
    reason: str
    candidates: _containers.RepeatedCompositeFieldContainer[RouteCandidate]
    attempts: int
    cache_hit: bool
    estimated_cost_usd: float
    baseline_cost_usd: float
    tier: ModelTier
    def __init__(self, node_id: _Optional[str] = ..., model: _Optional[str] = ..., provider: _Optional[str] = ..., policy: _Optional[str] = ..., reason: _Optional[str] = ..., candidates: _Optional[_Iterable[_Union[RouteCandidate, _Mapping]]] = ..., attempts: _Optional[int] = ..., cache_hit: _Optional[bool] = ..., estimated_cost_usd: _Optional[float] = ..., baseline_cost_usd: _Optional[float] = ..., tier: _Optional[_Union[ModelTier, str]] = ...) -> None: ...

class GuardFinding(_message.Message):
    __slots__ = ("type", "start", "end", "score")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    START_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    type: str
    start: int
    end: int
    score: float
    def __init__(self, type: _Optional[str] = ..., start: _Optional[int] = ..., end: _Optional[int] = ..., score: _Optional[float] = ...) -> None: ...

class GuardVerdict(_message.Message):
    __slots__ = ("guard", "stage", "action", "mode", "policy_version", "findings", "error_type")
    GUARD_FIELD_NUMBER: _ClassVar[int]
    STAGE_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    POLICY_VERSION_FIELD_NUMBER: _ClassVar[int]
    FINDINGS_FIELD_NUMBER: _ClassVar[int]
    ERROR_TYPE_FIELD_NUMBER: _ClassVar[int]
    guard: str
    stage: GuardStage
    action: GuardAction
    mode: GuardMode
    policy_version: str
    findings: _containers.RepeatedCompositeFieldContainer[GuardFinding]
    error_type: str
    def __init__(self, guard: _Optional[str] = ..., stage: _Optional[_Union[GuardStage, str]] = ..., action: _Optional[_Union[GuardAction, str]] = ..., mode: _Optional[_Union[GuardMode, str]] = ..., policy_version: _Optional[str] = ..., findings: _Optional[_Iterable[_Union[GuardFinding, _Mapping]]] = ..., error_type: _Optional[str] = ...) -> None: ...

class ModelCard(_message.Message):
    __slots__ = ("model_id", "provider", "kind", "tier", "context_window", "input_price_per_mtok", "output_price_per_mtok", "cached_input_price_per_mtok", "capabilities", "aliases")
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    TIER_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_WINDOW_FIELD_NUMBER: _ClassVar[int]
    INPUT_PRICE_PER_MTOK_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_PRICE_PER_MTOK_FIELD_NUMBER: _ClassVar[int]
    CACHED_INPUT_PRICE_PER_MTOK_FIELD_NUMBER: _ClassVar[int]
    CAPABILITIES_FIELD_NUMBER: _ClassVar[int]
    ALIASES_FIELD_NUMBER: _ClassVar[int]
    model_id: str
    provider: str
    kind: ModelKind
    tier: ModelTier
    context_window: int
    input_price_per_mtok: float
    output_price_per_mtok: float
    cached_input_price_per_mtok: float
    capabilities: _containers.RepeatedScalarFieldContainer[str]
    aliases: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, model_id: _Optional[str] = ..., provider: _Optional[str] = ..., kind: _Optional[_Union[ModelKind, str]] = ..., tier: _Optional[_Union[ModelTier, str]] = ..., context_window: _Optional[int] = ..., input_price_per_mtok: _Optional[float] = ..., output_price_per_mtok: _Optional[float] = ..., cached_input_price_per_mtok: _Optional[float] = ..., capabilities: _Optional[_Iterable[str]] = ..., aliases: _Optional[_Iterable[str]] = ...) -> None: ...

class NodeLoad(_message.Message):
    __slots__ = ("running", "waiting", "kv_cache_usage", "ewma_ttft_ms", "max_inflight")
    RUNNING_FIELD_NUMBER: _ClassVar[int]
    WAITING_FIELD_NUMBER: _ClassVar[int]
    KV_CACHE_USAGE_FIELD_NUMBER: _ClassVar[int]
    EWMA_TTFT_MS_FIELD_NUMBER: _ClassVar[int]
    MAX_INFLIGHT_FIELD_NUMBER: _ClassVar[int]
    running: int
    waiting: int
    kv_cache_usage: float
    ewma_ttft_ms: float
    max_inflight: int
    def __init__(self, running: _Optional[int] = ..., waiting: _Optional[int] = ..., kv_cache_usage: _Optional[float] = ..., ewma_ttft_ms: _Optional[float] = ..., max_inflight: _Optional[int] = ...) -> None: ...
