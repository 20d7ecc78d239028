"""The `router:` section of mesh.yaml and its subsections.

Each section is a small frozen pydantic model with extra=forbid, so a typo in mesh.yaml fails at
start with the key path instead of being ignored. Every field has a default: an empty `router:`
section gives a working router with no auth, no budgets and the cheapest-capable policy.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from mesh.config.common import (
    DEFAULT_HEARTBEAT_INTERVAL_S,
    DEFAULT_MAX_MESSAGE_BYTES,
    Address,
    StrictModel,
    Tier,
    check_address,
    data_dir,
    is_loopback,
)
from mesh.config.nodes import UpstreamConfig
from mesh.config.tls import ClientTls, ServerTls
from mesh.contract.node_token import DEFAULT_TOKEN_ENV, NodeToken, read_token

DEFAULT_ROUTER_LISTEN = "127.0.0.1:50051"
HTTP_OFF = "off"


def open_registry_refusal(listen: str) -> str:
    """Why `router.registry.mode: open` cannot serve on `listen` (the one wording for both
    config load and a `--listen` given at start)."""
    return (
        f"router.registry.mode open lets anything that reaches {listen} register a node and "
        "receive every tenant's prompts; it is allowed on a loopback listen address only: "
        "configure a registration token (router.registry.token_file or token_env) instead"
    )


PolicyKind = Literal["pinned", "cheapest", "latency", "least_load", "prefix_affinity"]

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
# A dotted module name, or one followed by ".*" (that module's submodules, at any depth).
_MODULE_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*(\.\*)?$")
DEFAULT_VALIDATOR_MODULES: tuple[str, ...] = ("guardrails_ai.*", "guardrails.hub.*")


class PolicyConfig(StrictModel):
    """One named routing policy."""

    kind: PolicyKind = Field(default="cheapest", description="which algorithm decides")
    model: str | None = Field(default=None, description="pinned: the model id or alias to send to")
    min_tier: Tier | None = Field(default=None, description="never route below this tier")
    prefix_chars: int = Field(
        default=256, ge=16, description="prefix_affinity: characters per hashed prefix block"
    )

    @model_validator(mode="after")
    def _pinned_needs_model(self) -> PolicyConfig:
        if self.kind == "pinned" and not self.model:
            raise ValueError("a pinned policy needs `model`")
        return self


def _default_policies() -> dict[str, PolicyConfig]:
    return {
        "cheapest": PolicyConfig(kind="cheapest"),
        "latency": PolicyConfig(kind="latency"),
        "least_load": PolicyConfig(kind="least_load"),
        "prefix_affinity": PolicyConfig(kind="prefix_affinity"),
    }


class BaselineSettings(StrictModel):
    """The premium model every request is compared against in the savings report."""

    model: str = Field(default="frontier-baseline", description="name shown in reports")
    input_price_per_mtok: float = Field(default=2.5, ge=0, description="USD per 1M prompt tokens")
    output_price_per_mtok: float = Field(
        default=10.0, ge=0, description="USD per 1M generated tokens"
    )


class EstimatorSettings(StrictModel):
    """How the tier a request needs is estimated (a classifier learned from labelled data)."""

    embeddings: bool = Field(
        default=True,
        description="read the task's MiniLM embedding (false: the structure-only model)",
    )
    model_path: Path | None = Field(
        default=None,
        description="tier model npz (train_estimator); default: the model shipped with mesh",
    )
    struct_model_path: Path | None = Field(
        default=None,
        description="structure-only tier model npz used when embeddings is false",
    )
    static_model_path: Path | None = Field(
        default=None,
        description="tier model over static vectors, asked first when router.embeddings.static "
        "is true (train_estimator --embedding static, then train_cascade); default: shipped",
    )
    underroute_risk: float | None = Field(
        default=None,
        gt=0,
        lt=1,
        description="pick the smallest tier whose chance of being too small is below this; "
        "default: the bound chosen on the model's validation split",
    )


class RoutingSettings(StrictModel):
    """Named policies and who uses which."""

    policies: dict[str, PolicyConfig] = Field(
        default_factory=_default_policies, description="policy name -> definition"
    )
    default_policy: str = Field(
        default="cheapest", description="policy for tenants without their own"
    )
    tenant_policies: dict[str, str] = Field(
        default_factory=dict, description="tenant -> policy name"
    )
    default_max_tokens: int = Field(
        default=256,
        ge=1,
        description="completion length assumed for cost when the request sets none",
    )
    allow_external: bool = Field(
        default=True, description="whether external models may be used by default"
    )
    unknown_ttft_ms: float = Field(
        default=1000.0, gt=0, description="TTFT assumed for a node that has not reported one yet"
    )
    baseline: BaselineSettings = Field(default_factory=lambda: BaselineSettings())
    estimator: EstimatorSettings = Field(default_factory=lambda: EstimatorSettings())

    @model_validator(mode="after")
    def _known_policies(self) -> RoutingSettings:
        names = set(self.policies)
        unknown = {self.default_policy} | set(self.tenant_policies.values())
        missing = sorted(unknown - names)
        if missing:
            raise ValueError(
                f"unknown policy name(s): {', '.join(missing)}; defined: {', '.join(sorted(names))}"
            )
        return self


class EmbeddingSettings(StrictModel):
    """The router's sentence embedders: all-MiniLM-L6-v2 on ONNX Runtime and, in front of it, a
    static table distilled from it (mesh/embeddings/static.py)."""

    precision: Literal["fp32", "int8"] = Field(
        default="int8",
        description="int8 (dynamic quantisation): 2.0 ms per short prompt here against 4.0 ms "
        "for fp32 and ~40 MB less memory, cosines within 0.02 of fp32; on the shared dev sets "
        "the same cache hits and the same or fewer mis-routings. fp32: the reference weights",
    )
    static: bool = Field(
        default=True,
        description="static vectors distilled from MiniLM (0.04 ms a prompt, on the event loop) "
        "for the semantic cache and a first tier estimate; MiniLM runs only where that estimate "
        "is not clear of its bounds (about 40 % of prompts on the validation split). False: "
        "MiniLM for every new prompt, as before",
    )


class CacheSettings(StrictModel):
    """Response cache: exact tier, then semantic tier."""

    enabled: bool = Field(
        default=True, description="master switch; RoutingHints.cache can bypass per call"
    )
    semantic: bool = Field(default=True, description="enable the MiniLM similarity tier")
    verify: bool = Field(
        default=True,
        description="serve a semantic candidate only after checking word by word that it asks "
        "the same question (negation, swapped roles, numbers, entities ...): MiniLM cosine "
        "cannot tell opposite questions apart (0.99 for 'Is Python faster than Java?' and the "
        "reverse). Off only to measure the embedding alone",
    )
    candidate_threshold: float = Field(
        default=0.30,
        gt=0,
        le=1,
        description="with verify on: cosine for a cached prompt to be checked as a candidate "
        "(the 8 nearest are). Verification, not the cosine, keeps wrong answers out; a low "
        "floor lets misspelt paraphrases through (int8 MiniLM put two typo pairs of the dev "
        "set at 0.33 and 0.39; 0.45 missed them, 0.30 and 0.20 gave the same figures)",
    )
    similarity_threshold: float = Field(
        default=0.95,
        gt=0,
        le=1,
        description="with verify off: cosine needed for a semantic hit (expect false hits)",
    )
    max_entries: int = Field(
        default=10_000, ge=1, description="size bound; least recently used goes first"
    )
    ttl_s: float = Field(
        default=3600.0, gt=0, description="an entry older than this is never served"
    )
    max_semantic_chars: int = Field(
        default=2000,
        ge=1,
        description="longer conversations use only the exact tier (MiniLM truncates at 256 tokens)",
    )
    max_exact_chars: int = Field(
        default=65_536,
        ge=1,
        description="longer conversations are not cached at all (normalising and hashing them "
        "would cost more on the event loop than a repeat of them is likely to save)",
    )


class TenantBudget(StrictModel):
    """Spending limits of one tenant; unset means unlimited."""

    daily_usd: float | None = Field(default=None, gt=0, description="limit per UTC day")
    monthly_usd: float | None = Field(
        default=None, gt=0, description="limit per UTC calendar month"
    )


BudgetStoreFailure = Literal["closed", "open"]


class BudgetSettings(StrictModel):
    """Per-tenant budgets; the tenant `*` applies to tenants not listed.

    With `router.ledger.url` on PostgreSQL, holds and spend live in that database, shared by
    every router replica using it; otherwise each router keeps them in its own memory.
    """

    tenants: dict[str, TenantBudget] = Field(default_factory=dict)
    on_store_error: BudgetStoreFailure = Field(
        default="closed",
        description="shared budgets (PostgreSQL) when the database cannot be reached: closed "
        "refuses a budgeted tenant's request (UNAVAILABLE, BUDGET_STORE_UNAVAILABLE); open "
        "admits it unchecked and records its spend once the database is back",
    )
    hold_ttl_s: float = Field(
        default=30.0,
        ge=1,
        description="shared budgets: a router's holds expire this long after it stops renewing "
        "them (it died mid-request); it renews its own every third of this",
    )
    store_timeout_s: float = Field(
        default=2.0,
        gt=0,
        description="shared budgets: longest wait for the database on a request's path",
    )


class ApiKeyConfig(StrictModel):
    """One API key, stored only as its SHA-256 (`mesh keys hash` prints it)."""

    name: str = Field(..., min_length=1, description="label for logs; never the key")
    sha256: str = Field(..., description="hex SHA-256 of the key")
    tenant: str = Field(..., min_length=1, description="tenant the key acts as")
    admin: bool = Field(default=False, description="may call PolicyService")

    @field_validator("sha256")
    @classmethod
    def _hex(cls, value: str) -> str:
        value = value.lower()
        if not _SHA256.match(value):
            raise ValueError("must be 64 hex characters (sha256 of the key), never the key itself")
        return value


DEFAULT_TENANT = "default"
"""The tenant of a request when no API keys are configured (guards and policies key on it)."""


class AuthSettings(StrictModel):
    """API keys; with none configured every request runs as tenant DEFAULT_TENANT."""

    api_keys: list[ApiKeyConfig] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique(self) -> AuthSettings:
        hashes = [k.sha256 for k in self.api_keys]
        if len(hashes) != len(set(hashes)):
            raise ValueError("the same key hash is configured twice")
        return self


class LedgerSettings(StrictModel):
    """Where cost rows go."""

    url: str | None = Field(
        default=None,
        description=(
            "SQLAlchemy async URL (postgresql+asyncpg://... for PostgreSQL); "
            "default: ledger.db in the data dir"
        ),
    )
    enabled: bool = Field(default=True, description="false: no ledger rows are written")
    flush_interval_s: float = Field(
        default=0.5, gt=0, description="buffered rows are written this often"
    )


class BreakerSettings(StrictModel):
    """Per-node circuit breaker and latency-outlier ejection."""

    consecutive_failures: int = Field(
        default=5, ge=1, description="open after this many failures in a row"
    )
    error_rate: float = Field(
        default=0.5, gt=0, le=1, description="open when this share of calls fails"
    )
    window_s: float = Field(
        default=30.0, gt=0, description="window the error rate is measured over"
    )
    min_calls: int = Field(
        default=10, ge=1, description="calls in the window before the rate counts"
    )
    cooldown_s: float = Field(
        default=10.0, gt=0, description="open state lasts this long, then one probe"
    )
    outlier_factor: float = Field(
        default=3.0, gt=1, description="eject a node whose latency is this many times the median"
    )
    outlier_min_nodes: int = Field(
        default=3, ge=2, description="ejection needs this many nodes to compare"
    )
    outlier_ejection_s: float = Field(
        default=30.0, gt=0, description="how long an outlier stays ejected"
    )
    max_ejected_share: float = Field(
        default=0.5, gt=0, le=1, description="never eject more than this share of the nodes"
    )


RegistryMode = Literal["token", "open", "off"]


class RegistrySettings(StrictModel):
    """Who may change the routing table through RegistryService, and on what terms.

    Registering is how a node attracts traffic (and every tenant's prompts), so it is off unless
    the operator chooses: `token` (nodes present the shared registration token), `open` (anyone
    that reaches the router; loopback only) or `off`. Without `mode` it is `token` when a token
    source gives a token, else `off`. The token is never a config value: `token_file` (wins) or
    the variable `token_env` holds it.
    """

    mode: RegistryMode | None = Field(
        default=None,
        description="token | open | off; default: token when a token source is configured "
        "(token_file, token_env, or the default variable set), else off",
    )
    heartbeat_interval_s: float = Field(
        default=DEFAULT_HEARTBEAT_INTERVAL_S, gt=0, description="how often nodes should report"
    )
    ttl_s: float = Field(default=10.0, gt=0, description="a node silent this long leaves the table")
    token_env: str = Field(
        default=DEFAULT_TOKEN_ENV,
        min_length=1,
        description="environment variable holding the registration token; when set here "
        "explicitly it must hold one",
    )
    token_file: Path | None = Field(
        default=None, description="or a file holding the token (wins over token_env)"
    )
    max_models_per_node: int = Field(
        default=16, ge=1, le=256, description="model cards one Register may carry"
    )
    max_register_bytes: int = Field(
        default=64 * 1024,
        ge=1024,
        le=DEFAULT_MAX_MESSAGE_BYTES,
        description="largest Register message; refused before it is parsed",
    )
    max_registered_nodes: int = Field(
        default=1024, ge=1, description="registered (not static) nodes the table holds at most"
    )
    max_registrations_per_minute: int = Field(
        default=60,
        ge=1,
        description="Register and Deregister calls (and heartbeats off their schedule) one peer "
        "host may make per minute, in bursts of as many; RESOURCE_EXHAUSTED above. Heartbeats "
        "of a registered node at its interval are never counted",
    )
    rate_limit_peers: int = Field(
        default=4096,
        ge=1,
        description="peer hosts whose rate is tracked; the least recently seen is forgotten first",
    )
    node_identities: list[str] = Field(
        default_factory=list,
        description="client-certificate identities accepted as the registration credential "
        "instead of the token (URI SANs such as spiffe://inference-mesh/node, DNS SANs or the "
        "subject CN; `*` globs). Needs router.tls.client_ca_file. Leases apply as with a token",
    )

    @model_validator(mode="after")
    def _ttl_covers_heartbeats(self) -> RegistrySettings:
        if self.ttl_s < 2 * self.heartbeat_interval_s:
            raise ValueError("ttl_s must be at least twice heartbeat_interval_s")
        return self

    @model_validator(mode="after")
    def _one_token_source(self) -> RegistrySettings:
        if self.token_file is not None and "token_env" in self.model_fields_set:
            raise ValueError("set token_env or token_file, not both")
        return self

    @model_validator(mode="after")
    def _token_only_in_token_mode(self) -> RegistrySettings:
        named = self.token_file is not None or "token_env" in self.model_fields_set
        if named and self.mode in ("open", "off"):
            raise ValueError(
                f"mode {self.mode} takes no token: drop token_file/token_env, or use mode token"
            )
        return self

    @model_validator(mode="after")
    def _identities_only_in_token_mode(self) -> RegistrySettings:
        if self.node_identities and self.mode in ("open", "off"):
            raise ValueError(
                f"mode {self.mode} takes no node_identities: drop them, or use mode token"
            )
        return self

    def token(self) -> NodeToken | None:
        """The registration token, read now (TokenUnavailable names a broken source).

        In mode `token` a token is required, from the default variable too, unless node
        certificates (`node_identities`) are the credential.
        """
        return read_token(
            "router.registry",
            env=self.token_env,
            file=self.token_file,
            env_required="token_env" in self.model_fields_set
            or (self.mode == "token" and not self.node_identities),
        )

    def resolved_mode(self) -> tuple[RegistryMode, NodeToken | None]:
        """The mode in force and its token (read now): `mode`, or token/off by the token.

        With `node_identities` the mode is token even without a token: a node certificate
        is then the only credential.
        """
        if self.mode in ("open", "off"):
            return self.mode, None
        token = self.token()
        if token is not None or self.node_identities:
            return "token", token
        return "off", None


class GuardSettings(StrictModel):
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
    audit_retention_days: float = Field(
        90.0, gt=0, description="audited decisions older than this are deleted while running"
    )
    audit_max_rows: int = Field(
        1_000_000,
        ge=1,
        description="past this many audited decisions the oldest are deleted while running",
    )
    admin_key_env: str = Field(
        "MESH_ADMIN_KEY", description="environment variable holding the PolicyService admin key"
    )
    admin_key_file: str | None = Field(None, description="or a file holding it (wins over env)")
    validator_modules: tuple[str, ...] = Field(
        DEFAULT_VALIDATOR_MODULES,
        description="modules a policy's `use: module:Class` may load a guardrails-ai Validator "
        "from: a module name, or `name.*` for its submodules. Set here by the operator, never "
        "by a policy: anything else is refused before it is imported",
    )

    @field_validator("validator_modules")
    @classmethod
    def _module_patterns(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for pattern in value:
            if not _MODULE_PATTERN.match(pattern):
                raise ValueError(
                    f"{pattern!r} is not a module name or `package.*` (e.g. guardrails_ai.*)"
                )
        return value

    def admin_key(self) -> str | None:
        """The admin key, read when needed and never stored in the config object."""
        if self.admin_key_file:
            return Path(self.admin_key_file).read_text(encoding="utf-8").strip() or None
        return os.environ.get(self.admin_key_env) or None

    def resolved_audit_url(self) -> str:
        return self.audit_url or f"sqlite+aiosqlite:///{data_dir() / 'guard_audit.db'}"


def http_listen_value(value: object) -> str | None:
    """An HTTP listen setting: host:port, or None for `off` / null / YAML's `off` (false)."""
    if value is None or value is False:
        return None
    if not isinstance(value, str):
        raise ValueError(f"{value!r} is not host:port or {HTTP_OFF}")
    if value.strip().lower() == HTTP_OFF:
        return None
    return check_address(value.strip())


class HttpSettings(StrictModel):
    """The OpenAI-compatible HTTP front: a second door onto the same request pipeline."""

    listen: str | None = Field(
        None,
        description="host:port of /v1/chat/completions and /v1/models; null or `off`: no HTTP "
        "front (`mesh up` serves one on its own default unless this is set: `mesh up --help`)",
    )
    max_body_bytes: int = Field(
        DEFAULT_MAX_MESSAGE_BYTES,
        ge=1024,
        description="largest request body accepted (413 above, before it is parsed)",
    )
    tls: ServerTls | None = Field(
        None,
        description="HTTPS (and, with client_ca_file, mutual TLS) for the HTTP front; "
        "rotated files are picked up by new connections",
    )

    _check_listen = field_validator("listen", mode="before")(
        classmethod(lambda cls, v: http_listen_value(v))
    )


class RouterConfig(StrictModel):
    """The router front node."""

    listen: Address = DEFAULT_ROUTER_LISTEN
    upstreams: list[UpstreamConfig] = Field(default_factory=list)
    default_timeout_s: float = Field(120.0, gt=0, description="deadline for calls that carry none")
    health_interval_s: float = Field(2.0, gt=0, description="how often upstream health is probed")
    health_timeout_s: float = Field(
        1.0,
        gt=0,
        le=60,
        description="how long a health probe waits for a node's answer; a node farther away "
        "than the default allows (another region) needs more",
    )
    max_prompt_chars: int = Field(
        262_144,
        ge=1,
        description="characters of message content a request may carry; above it "
        "INVALID_ARGUMENT before any guard runs (the default token_limit guard allows ~32k "
        "tokens, ~128k characters)",
    )
    max_message_bytes: int = Field(
        DEFAULT_MAX_MESSAGE_BYTES,
        ge=1024,
        description="largest request accepted (RESOURCE_EXHAUSTED above)",
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
    embeddings: EmbeddingSettings = Field(default_factory=EmbeddingSettings)
    budgets: BudgetSettings = Field(default_factory=BudgetSettings)
    auth: AuthSettings = Field(default_factory=AuthSettings)
    ledger: LedgerSettings = Field(default_factory=LedgerSettings)
    breaker: BreakerSettings = Field(default_factory=BreakerSettings)
    registry: RegistrySettings = Field(default_factory=RegistrySettings)
    http: HttpSettings = Field(default_factory=HttpSettings)
    tls: ServerTls | None = Field(
        None,
        description="TLS for the router's gRPC server; with client_ca_file, mutual TLS (every "
        "caller needs a certificate from that CA). Rotated files are picked up live",
    )
    upstream_tls: ClientTls | None = Field(
        None,
        description="TLS of the router's channels to nodes: the CA nodes' certificates must "
        "chain to and the client certificate the router presents; none: plaintext",
    )
    insecure: bool = Field(
        False,
        description="serve plaintext off loopback without a registration token on purpose; "
        "without it such a router refuses to start",
    )

    _check_listen = field_validator("listen")(classmethod(lambda cls, v: check_address(v)))

    @model_validator(mode="after")
    def _identities_need_client_certificates(self) -> RouterConfig:
        if self.registry.node_identities and (self.tls is None or not self.tls.mutual):
            raise ValueError(
                "router.registry.node_identities needs router.tls.client_ca_file: a certificate "
                "identity counts only when the router verified the certificate"
            )
        return self

    @model_validator(mode="after")
    def _open_registry_on_loopback(self) -> RouterConfig:
        if self.registry.mode == "open" and not is_loopback(self.listen):
            raise ValueError(open_registry_refusal(self.listen))
        return self

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
