"""Node sections of mesh.yaml: a local model node, its vLLM engine arguments, a static upstream."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from mesh.config.common import (
    DEFAULT_HEARTBEAT_INTERVAL_S,
    Address,
    StrictModel,
    Tier,
    check_address,
    check_dialable,
    is_wildcard,
)
from mesh.config.tls import ClientTls, ServerTls
from mesh.contract.node_token import DEFAULT_TOKEN_ENV, NodeToken, read_token


class VllmEngineConfig(StrictModel):
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


class NodeConfig(StrictModel):
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
        DEFAULT_HEARTBEAT_INTERVAL_S,
        gt=0,
        description="load report period until the router states its own",
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
    tls: ServerTls | None = Field(
        None,
        description="TLS for the node's server; with client_ca_file, only callers holding a "
        "certificate from that CA (the mesh's routers) may call it. Rotated files are used live",
    )
    router_tls: ClientTls | None = Field(
        None,
        description="TLS of the registration channel: the CA the router's certificate must "
        "chain to and the node certificate presented (the credential, where the router takes "
        "node certificates instead of the token)",
    )
    insecure: bool = Field(
        False, description="serve plaintext off loopback on purpose; without it the node refuses"
    )

    _check_listen = field_validator("listen")(classmethod(lambda cls, v: check_address(v)))
    _check_dialable = field_validator("router_address", "advertise_address")(
        classmethod(lambda cls, v: None if v is None else check_dialable(v))
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
        if self.router_address and not self.advertise_address and is_wildcard(self.listen):
            raise ValueError(
                f"advertise_address is required: listen {self.listen!r} is a wildcard the "
                f"router at {self.router_address!r} cannot dial"
            )
        return self


class UpstreamConfig(StrictModel):
    """A node the router forwards to (an address or a Kubernetes DNS name)."""

    id: str = Field(..., min_length=1)
    address: Address

    _check = field_validator("address")(classmethod(lambda cls, v: check_address(v)))
