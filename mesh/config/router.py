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
)
from mesh.config.nodes import UpstreamConfig
from mesh.contract.node_token import DEFAULT_TOKEN_ENV, NodeToken, read_token

DEFAULT_ROUTER_LISTEN = "127.0.0.1:50051"

PolicyKind = Literal["pinned", "cheapest", "latency", "least_load", "prefix_affinity"]

_SHA256 = re.compile(r"^[0-9a-f]{64}$")


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


class CacheSettings(StrictModel):
    """Response cache: exact tier, then semantic tier."""

    enabled: bool = Field(
        default=True, description="master switch; RoutingHints.cache can bypass per call"
    )
    semantic: bool = Field(default=True, description="enable the MiniLM similarity tier")
    similarity_threshold: float = Field(
        default=0.95, gt=0, le=1, description="cosine needed for a semantic hit"
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


class BudgetSettings(StrictModel):
    """Per-tenant budgets; the tenant `*` applies to tenants not listed."""

    tenants: dict[str, TenantBudget] = Field(default_factory=dict)


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


class RegistrySettings(StrictModel):
    """Node registration terms, and the token nodes need to change the routing table.

    The token is never a config value: `token_file` (wins) or the variable `token_env` holds it.
    Unset default variable and no file: registration is open (fine on loopback only).
    """

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

    def token(self) -> NodeToken | None:
        """The registration token, read now (TokenUnavailable names a broken source)."""
        return read_token(
            "router.registry",
            env=self.token_env,
            file=self.token_file,
            env_required="token_env" in self.model_fields_set,
        )


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
    admin_key_env: str = Field(
        "MESH_ADMIN_KEY", description="environment variable holding the PolicyService admin key"
    )
    admin_key_file: str | None = Field(None, description="or a file holding it (wins over env)")

    def admin_key(self) -> str | None:
        """The admin key, read when needed and never stored in the config object."""
        if self.admin_key_file:
            return Path(self.admin_key_file).read_text(encoding="utf-8").strip() or None
        return os.environ.get(self.admin_key_env) or None

    def resolved_audit_url(self) -> str:
        return self.audit_url or f"sqlite+aiosqlite:///{data_dir() / 'guard_audit.db'}"


class RouterConfig(StrictModel):
    """The router front node."""

    listen: Address = DEFAULT_ROUTER_LISTEN
    upstreams: list[UpstreamConfig] = Field(default_factory=list)
    default_timeout_s: float = Field(120.0, gt=0, description="deadline for calls that carry none")
    health_interval_s: float = Field(2.0, gt=0, description="how often upstream health is probed")
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
    budgets: BudgetSettings = Field(default_factory=BudgetSettings)
    auth: AuthSettings = Field(default_factory=AuthSettings)
    ledger: LedgerSettings = Field(default_factory=LedgerSettings)
    breaker: BreakerSettings = Field(default_factory=BreakerSettings)
    registry: RegistrySettings = Field(default_factory=RegistrySettings)

    _check_listen = field_validator("listen")(classmethod(lambda cls, v: check_address(v)))

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
