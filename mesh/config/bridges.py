"""What one bridge node is: provider, endpoint, model, where its key lives, prices and limits.

The API key itself is never a config value: the config names an environment variable or a
file, and `read_api_key` reads it once, when the SDK client is built. So `repr`, logs and
`model_dump` of a config can never contain the key.

Prices here are data only (a bridge's own `price:`); looking the model up in a price table
happens where the bridge is built (`nodes.bridges.prices.bridge_price`).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator

from mesh.config.common import StrictModel, Tier, check_address, check_dialable, field_default
from mesh.config.nodes import NodeConfig
from mesh.config.tls import ClientTls, ServerTls

log = logging.getLogger(__name__)

Provider = Literal["openai", "anthropic", "openai-compatible"]
PROVIDERS: tuple[Provider, ...] = ("openai", "anthropic", "openai-compatible")

DEFAULT_BASE_URLS: dict[str, str] = {
    "openai": "https://api.openai.com/v1",
    "anthropic": "https://api.anthropic.com",
}
DEFAULT_KEY_ENVS: dict[str, str] = {"openai": "OPENAI_API_KEY", "anthropic": "ANTHROPIC_API_KEY"}
FALLBACK_CONTEXT_WINDOW = 8192


class MissingApiKey(ValueError):
    """The configured key source is empty or unreadable (the message names the source only)."""


def describe_errors(exc: ValidationError) -> str:
    """One line per problem, naming the field and the reason but never the value given.

    pydantic's own text quotes input values: a key pasted into the wrong field would be echoed.
    """
    lines = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "(top level)"
        reason = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
        lines.append(f"{where}: {reason}")
    return "; ".join(lines)


class ModelPrice(StrictModel):
    """USD per million tokens for one model (a price table row, or a bridge's own `price:`)."""

    input: float = Field(..., ge=0, description="prompt tokens not served from cache")
    output: float = Field(..., ge=0, description="generated tokens")
    cached_input: float | None = Field(
        None, ge=0, description="prompt tokens read from the provider cache; default: input"
    )
    cache_write: float | None = Field(
        None, ge=0, description="prompt tokens written to the provider cache; default: input"
    )
    provider: str | None = Field(None, description="whose list price this is")
    context_window: int | None = Field(None, ge=16, description="the model's context window")
    tier: Tier | None = Field(None, description="capability class the mesh routes by")

    @property
    def cached_input_rate(self) -> float:
        return self.input if self.cached_input is None else self.cached_input

    @property
    def cache_write_rate(self) -> float:
        return self.input if self.cache_write is None else self.cache_write


class BridgeLimits(StrictModel):
    """Per-bridge limits, enforced before the provider is called."""

    max_concurrent: int = Field(16, ge=1, description="requests in flight to the provider")
    requests_per_minute: int | None = Field(None, ge=1, description="none: no request limit")
    tokens_per_minute: int | None = Field(
        None, ge=1, description="prompt + completion tokens; none: no token limit"
    )


class RetryPolicy(StrictModel):
    """Retries of 429 / 5xx / connection errors, only before any output was sent."""

    max_attempts: int = Field(3, ge=1, le=10, description="attempts in all, the first included")
    base_delay_s: float = Field(0.5, gt=0, description="first backoff; doubles per attempt")
    max_delay_s: float = Field(8.0, gt=0, description="cap of one backoff (Retry-After wins)")


def _node_default(name: str) -> Any:
    # A bridge is a node: a setting both have takes NodeConfig's default.
    return field_default(NodeConfig, name)


class BridgeConfig(StrictModel):
    """One bridge node: an external model behind mesh.v1.InferenceService."""

    id: str = Field(..., min_length=1, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    provider: Provider
    model: str = Field(..., min_length=1, description="the provider's model name")
    base_url: str | None = Field(
        None, description="API root; default: the provider's public endpoint"
    )
    api_key_env: str | None = Field(
        None, description="variable holding the key; default OPENAI_API_KEY / ANTHROPIC_API_KEY"
    )
    api_key_file: Path | None = Field(None, description="or a file holding the key")
    listen: str = Field(_node_default("listen"), description="host:port; port 0: a free port")
    tier: Tier | None = Field(None, description="default: the price table's, else medium")
    context_window: int | None = Field(None, ge=16, description="default: the price table's")
    aliases: list[str] = Field(default_factory=list)
    capabilities: list[str] = Field(default_factory=lambda: _node_default("capabilities"))
    default_max_tokens: int = Field(
        _node_default("default_max_tokens"),
        ge=1,
        description="max_tokens when the request sets none",
    )
    price: ModelPrice | None = Field(None, description="overrides the price table for this model")
    price_table: Path | None = Field(None, description="a price table file replacing the default")
    limits: BridgeLimits = Field(default_factory=BridgeLimits)
    retry: RetryPolicy = Field(default_factory=RetryPolicy)
    request_timeout_s: float = Field(
        120.0, gt=0, description="per attempt, when the caller sets no deadline"
    )
    health_probe_interval_s: float = Field(
        30.0, gt=0, description="how often the provider's model list is fetched as a probe"
    )
    router_address: str | None = Field(None, description="router to register with")
    advertise_address: str | None = Field(None, description="address the router dials")
    heartbeat_interval_s: float = Field(_node_default("heartbeat_interval_s"), gt=0)
    router_token_env: str | None = Field(
        None, description="variable holding the router's registration token (default: the node's)"
    )
    router_token_file: Path | None = Field(None, description="or a file holding the token")
    tls: ServerTls | None = Field(None, description="TLS for the bridge's server (as a node's)")
    router_tls: ClientTls | None = Field(
        None, description="TLS of the registration channel (as a node's)"
    )
    insecure: bool = Field(
        False, description="serve plaintext off loopback on purpose; without it the bridge refuses"
    )

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError(f"{value!r} is not an http(s) URL")
        return value.rstrip("/") if value else value

    # The same address rules as a node's, so mesh.yaml reports a bad one at load, with its line.
    _check_listen = field_validator("listen")(classmethod(lambda cls, v: check_address(v)))
    _check_dialable = field_validator("router_address", "advertise_address")(
        classmethod(lambda cls, v: None if v is None else check_dialable(v))
    )

    @model_validator(mode="after")
    def _consistent(self) -> BridgeConfig:
        if self.api_key_env and self.api_key_file:
            raise ValueError("set api_key_env or api_key_file, not both")
        if self.router_token_env and self.router_token_file:
            raise ValueError("set router_token_env or router_token_file, not both")
        if self.provider == "openai-compatible" and not self.base_url:
            raise ValueError("provider openai-compatible needs base_url")
        return self

    # --- resolved values ------------------------------------------------------------------
    @property
    def resolved_base_url(self) -> str:
        return self.base_url or DEFAULT_BASE_URLS[self.provider]

    @property
    def key_source(self) -> str:
        """Where the key comes from, safe to log ("env OPENAI_API_KEY", "file ...", "none")."""
        if self.api_key_file:
            return f"file {self.api_key_file}"
        env = self.api_key_env or DEFAULT_KEY_ENVS.get(self.provider)
        return f"env {env}" if env else "none"

    def read_api_key(self) -> str | None:
        """The key, read now; None only for an openai-compatible endpoint without auth."""
        if self.api_key_file:
            try:
                key = self.api_key_file.read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise MissingApiKey(
                    f"cannot read API key file {self.api_key_file}: {exc.strerror}"
                ) from None
            if not key:
                raise MissingApiKey(f"API key file {self.api_key_file} is empty")
            return key
        env = self.api_key_env or DEFAULT_KEY_ENVS.get(self.provider)
        if env is None:
            return None  # an openai-compatible server that needs no key
        key = os.environ.get(env, "").strip()
        if not key:
            raise MissingApiKey(f"environment variable {env} is not set")
        return key

    def node_config(self, price: ModelPrice) -> NodeConfig:
        """The node-level settings the shared node servicer and runtime work from."""
        window = self.context_window or price.context_window
        if window is None:
            log.warning(
                "bridge %s: context window of %s unknown; assuming %d",
                self.id,
                self.model,
                FALLBACK_CONTEXT_WINDOW,
            )
        return NodeConfig(
            id=self.id,
            engine="bridge",
            model=self.model,
            listen=self.listen,
            tier=self.tier or price.tier or Tier.MEDIUM,
            context_window=window or FALLBACK_CONTEXT_WINDOW,
            input_price_per_mtok=price.input,
            output_price_per_mtok=price.output,
            capabilities=list(self.capabilities),
            aliases=list(self.aliases),
            max_inflight=self.limits.max_concurrent,
            default_max_tokens=self.default_max_tokens,
            router_address=self.router_address,
            advertise_address=self.advertise_address,
            heartbeat_interval_s=self.heartbeat_interval_s,
            tls=self.tls,
            router_tls=self.router_tls,
            insecure=self.insecure,
            # Only what was set: an unset variable keeps NodeConfig's default and its meaning.
            **{
                name: value
                for name, value in (
                    ("router_token_env", self.router_token_env),
                    ("router_token_file", self.router_token_file),
                )
                if value is not None
            },
        )
