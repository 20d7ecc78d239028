"""mesh.yaml: one validated document for the router, the nodes and the embedded mesh.

Unknown keys and bad values fail at start with the file, the line, the key path and the reason.
Secrets are never config values: config names an environment variable or a file instead.

`bridges:` entries are `nodes.bridges.config.BridgeConfig`, which itself builds on this module
(`NodeConfig`, `Tier`), so it cannot be imported here at module level. `MeshConfig` is therefore
built lazily (`defer_build`): its schema, and with it the import of `BridgeConfig`, happens on
first validation, when both modules are complete whichever was imported first. Bridge entries
thus get the same strict validation, key paths and line numbers as the rest of the file.
"""

from __future__ import annotations

import enum
import ipaddress
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    GetPydanticSchema,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import CoreSchema

from mesh.contract.node_token import DEFAULT_TOKEN_ENV, NodeToken, read_token
from mesh.router.settings import (
    AuthSettings,
    BreakerSettings,
    BudgetSettings,
    CacheSettings,
    LedgerSettings,
    RegistrySettings,
    RoutingSettings,
)
from mesh.telemetry.settings import TelemetrySettings

DEFAULT_ROUTER_LISTEN = "127.0.0.1:50051"


class ConfigError(ValueError):
    """A config file that cannot be used; the message names file, line, key and reason."""


class Tier(enum.StrEnum):
    """Model capability classes, cheapest first."""

    SMALL = "small"
    MEDIUM = "medium"
    LARGE = "large"
    FRONTIER = "frontier"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _check_address(value: str) -> str:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"{value!r} is not host:port (port 0 picks a free one)")
    return value


def is_loopback(address: str) -> bool:
    """Whether a listen address stays on this machine."""
    host = address.rpartition(":")[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


Address = Annotated[str, Field(min_length=3, description="host:port")]


class VllmEngineConfig(_Strict):
    """Arguments for vLLM's AsyncEngineArgs; the only thing that differs between CPU and GPU."""

    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="auto: float32 on CPU (5x faster than bf16 there), bf16/fp16 on GPU"
    )
    max_model_len: int = Field(2048, ge=128, description="context length the engine reserves")
    kv_cache_gib: float = Field(
        1.0, gt=0, description="KV cache size on CPU (VLLM_CPU_KVCACHE_SPACE)"
    )
    gpu_memory_utilization: float = Field(0.5, gt=0, le=1, description="share of GPU memory on GPU")
    max_num_seqs: int = Field(16, ge=1, description="sequences batched together")
    enforce_eager: bool | None = Field(
        None, description="skip torch.compile/CUDA graphs; default: True on CPU, False on GPU"
    )
    enable_prefix_caching: bool = Field(True, description="reuse KV blocks of shared prefixes")


class NodeConfig(_Strict):
    """One inference node: a local model behind mesh.v1.InferenceService."""

    id: str = Field(..., min_length=1, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    engine: Literal["vllm", "transformers", "fake", "bridge"] = Field(
        "transformers",
        description="fake is a deterministic test engine, never for serving; bridge: an "
        "external API, built by nodes.bridges (`mesh bridge`), not by create_backend",
    )
    model: str = Field("smollm2-135m-instruct", description="a known model name (mesh models list)")
    listen: Address = Field("127.0.0.1:0", description="host:port; port 0 picks a free port")
    tier: Tier = Tier.SMALL
    context_window: int | None = Field(None, ge=16, description="default: the model's own")
    input_price_per_mtok: float = Field(
        0.0, ge=0, description="USD per 1M prompt tokens (amortised)"
    )
    output_price_per_mtok: float = Field(0.0, ge=0, description="USD per 1M generated tokens")
    capabilities: list[str] = Field(default_factory=lambda: ["chat"])
    aliases: list[str] = Field(default_factory=list)
    max_inflight: int = Field(
        32, ge=1, description="admitted requests; above it RESOURCE_EXHAUSTED"
    )
    default_max_tokens: int = Field(256, ge=1, description="max_tokens when the request sets none")
    vllm: VllmEngineConfig = Field(default_factory=VllmEngineConfig)
    router_address: Address | None = Field(
        None, description="router whose RegistryService the node joins; none: static lists only"
    )
    advertise_address: Address | None = Field(
        None, description="host:port the router dials; default: the bound listen address"
    )
    heartbeat_interval_s: float = Field(
        2.0, gt=0, description="load report period until the router states its own"
    )
    router_token_env: str = Field(
        DEFAULT_TOKEN_ENV,
        min_length=1,
        description="environment variable holding the router's registration token (sent as "
        "x-mesh-node-token); unset default variable: none is sent",
    )
    router_token_file: Path | None = Field(
        None, description="or a file holding the token (wins over router_token_env)"
    )

    _check_listen = field_validator("listen")(classmethod(lambda cls, v: _check_address(v)))
    _check_dialable = field_validator("router_address", "advertise_address")(
        classmethod(lambda cls, v: None if v is None else _check_dialable(v))
    )

    @model_validator(mode="after")
    def _one_token_source(self) -> NodeConfig:
        if self.router_token_file is not None and "router_token_env" in self.model_fields_set:
            raise ValueError("set router_token_env or router_token_file, not both")
        return self

    def router_token(self) -> NodeToken | None:
        """The registration token, read now (TokenUnavailable names a broken source)."""
        return read_token(
            f"node {self.id}",
            env=self.router_token_env,
            file=self.router_token_file,
            env_required="router_token_env" in self.model_fields_set,
        )

    @model_validator(mode="after")
    def _advertise_when_wildcard(self) -> NodeConfig:
        # The bound address of a wildcard listen is not one a router can dial.
        if self.router_address and not self.advertise_address and _is_wildcard(self.listen):
            raise ValueError(
                f"advertise_address is required: listen {self.listen!r} is a wildcard the "
                f"router at {self.router_address!r} cannot dial"
            )
        return self


def _is_wildcard(address: str) -> bool:
    return address.rpartition(":")[0].strip("[]") in ("", "0.0.0.0", "::", "*")


def _check_dialable(value: str) -> str:
    """An address another process connects to: host:port, no wildcard host, no port 0."""
    _check_address(value)
    if _is_wildcard(value) or int(value.rpartition(":")[2]) == 0:
        raise ValueError(f"{value!r} cannot be dialled (wildcard host or port 0)")
    return value


class UpstreamConfig(_Strict):
    """A node the router forwards to (an address or a Kubernetes DNS name)."""

    id: str = Field(..., min_length=1)
    address: Address

    _check = field_validator("address")(classmethod(lambda cls, v: _check_address(v)))


def data_dir() -> Path:
    """Where the embedded mesh keeps its SQLite files (`$MESH_DATA_DIR`, else the cache dir)."""
    import os

    root = os.environ.get("MESH_DATA_DIR")
    return Path(root) if root else Path.home() / ".cache" / "inference-mesh"


class GuardSettings(_Strict):
    """The router's guard chain: which policy, where verdicts are audited, who may change it."""

    enabled: bool = Field(True, description="false: no guards at all (not recommended)")
    policy_file: str | None = Field(
        None, description="guard policy YAML; default: the shipped guards/policies/default.yaml"
    )
    watch: bool = Field(
        True, description="reload policy_file when it changes (a broken file is ignored)"
    )
    audit_url: str | None = Field(
        None, description="SQLAlchemy URL; default: sqlite file guard_audit.db in the data dir"
    )
    admin_key_env: str = Field(
        "MESH_ADMIN_KEY", description="environment variable holding the PolicyService admin key"
    )
    admin_key_file: str | None = Field(None, description="or a file holding it (wins over env)")

    def admin_key(self) -> str | None:
        """The admin key, read when needed and never stored in the config object."""
        import os

        if self.admin_key_file:
            return Path(self.admin_key_file).read_text(encoding="utf-8").strip() or None
        return os.environ.get(self.admin_key_env) or None

    def resolved_audit_url(self) -> str:
        return self.audit_url or f"sqlite+aiosqlite:///{data_dir() / 'guard_audit.db'}"


class RouterConfig(_Strict):
    """The router front node."""

    listen: Address = DEFAULT_ROUTER_LISTEN
    upstreams: list[UpstreamConfig] = Field(default_factory=list)
    default_timeout_s: float = Field(120.0, gt=0, description="deadline for calls that carry none")
    health_interval_s: float = Field(2.0, gt=0, description="how often upstream health is probed")
    max_message_bytes: int = Field(
        4 * 1024 * 1024, ge=1024, description="largest request accepted (RESOURCE_EXHAUSTED above)"
    )
    first_token_timeout_s: float | None = Field(
        30.0, gt=0, description="a stream silent this long before its first token: next node"
    )
    idle_timeout_s: float | None = Field(
        60.0, gt=0, description="a committed stream silent this long is ended (UNAVAILABLE)"
    )
    guards: GuardSettings = Field(default_factory=GuardSettings)
    routing: RoutingSettings = Field(default_factory=RoutingSettings)
    cache: CacheSettings = Field(default_factory=CacheSettings)
    budgets: BudgetSettings = Field(default_factory=BudgetSettings)
    auth: AuthSettings = Field(default_factory=AuthSettings)
    ledger: LedgerSettings = Field(default_factory=LedgerSettings)
    breaker: BreakerSettings = Field(default_factory=BreakerSettings)
    registry: RegistrySettings = Field(default_factory=RegistrySettings)

    _check_listen = field_validator("listen")(classmethod(lambda cls, v: _check_address(v)))

    def ledger_url(self) -> str:
        """The ledger database: the configured URL, else ledger.db in the data dir."""
        return self.ledger.url or f"sqlite+aiosqlite:///{data_dir() / 'ledger.db'}"

    @model_validator(mode="after")
    def _unique_upstreams(self) -> RouterConfig:
        ids = [u.id for u in self.upstreams]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"duplicate upstream ids: {', '.join(dupes)}")
        return self


def _bridge_schema(_source: Any, handler: GetCoreSchemaHandler) -> CoreSchema:
    # Runs when MeshConfig's deferred schema is built, after both modules are complete.
    from nodes.bridges.config import BridgeConfig

    return handler(BridgeConfig)


if TYPE_CHECKING:
    from nodes.bridges.config import BridgeConfig as BridgeEntry
else:
    BridgeEntry = Annotated[object, GetPydanticSchema(_bridge_schema)]


class MeshConfig(_Strict):
    """The whole mesh.yaml."""

    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

    router: RouterConfig = Field(default_factory=RouterConfig)
    nodes: list[NodeConfig] = Field(
        default_factory=list, description="nodes that `mesh up` starts in-process"
    )
    bridges: list[BridgeEntry] = Field(
        default_factory=list,
        description="bridge nodes (external APIs) that `mesh up` starts in-process",
    )
    telemetry: TelemetrySettings = Field(default_factory=TelemetrySettings)

    @model_validator(mode="after")
    def _unique_nodes(self) -> MeshConfig:
        ids = (
            [n.id for n in self.nodes]
            + [b.id for b in self.bridges]
            + [u.id for u in self.router.upstreams]
        )
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(
                "node ids must be unique across nodes, bridges and upstreams: " + ", ".join(dupes)
            )
        return self


def _line_of(root: yaml.Node | None, loc: tuple[int | str, ...]) -> int | None:
    """1-based line of the deepest YAML node on the error's key path."""
    node, line = root, None
    for part in loc:
        if node is None:
            break
        line = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            node = next((v for k, v in node.value if k.value == part), None)
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            node = node.value[part] if part < len(node.value) else None
        else:
            node = None
    if node is not None:
        line = node.start_mark.line + 1
    return line


def _format_loc(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def parse_config(text: str, source: str = "<string>") -> MeshConfig:
    """Validate a YAML document; raise ConfigError naming file, line, key and reason."""
    try:
        data: Any = yaml.safe_load(text)
        root = yaml.compose(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}" if mark else source
        raise ConfigError(f"{where}: not valid YAML: {getattr(exc, 'problem', exc)}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the top level must be a mapping, not {type(data).__name__}")
    try:
        return MeshConfig.model_validate(data)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            loc = tuple(p for p in err["loc"] if not str(p).startswith("function-"))
            line = _line_of(root, loc)
            where = f"{source}:{line}" if line else source
            reason = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
            lines.append(f"{where}: {_format_loc(loc)}: {reason}")
        raise ConfigError("invalid config:\n  " + "\n  ".join(lines)) from None


def load_config(path: str | Path) -> MeshConfig:
    """Read and validate mesh.yaml."""
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read: {exc.strerror}") from None
    return parse_config(text, str(p))


def default_config() -> MeshConfig:
    """The embedded default: one router on 127.0.0.1:50051 and one SmolLM2 node."""
    return MeshConfig(
        router=RouterConfig(),
        nodes=[
            NodeConfig(
                id="local-smollm2",
                engine=default_engine(),
                model="smollm2-135m-instruct",
                tier=Tier.SMALL,
                input_price_per_mtok=0.02,
                output_price_per_mtok=0.04,
                aliases=["smollm2"],
            )
        ],
    )


def default_engine() -> Literal["vllm", "transformers", "fake"]:
    """`$MESH_ENGINE` if set, else vLLM where it is installed, else transformers."""
    import os

    chosen = os.environ.get("MESH_ENGINE", "")
    if chosen in ("vllm", "transformers", "fake"):
        return chosen  # type: ignore[return-value]
    return "vllm" if vllm_available() else "transformers"


def vllm_available() -> bool:
    """Whether vLLM is installed (the default engine then); import-free and cheap."""
    import importlib.util

    return importlib.util.find_spec("vllm") is not None
