"""Build the provider client a bridge config names (the only place that knows the SDKs)."""

from __future__ import annotations

from mesh.config import BridgeConfig
from nodes.bridges.provider import ProviderClient


def create_client(config: BridgeConfig, api_key: str | None) -> ProviderClient:
    """`api_key` goes straight into the SDK client and is kept nowhere else."""
    if config.provider == "anthropic":
        from nodes.bridges.anthropic_provider import AnthropicClient

        return AnthropicClient(base_url=config.resolved_base_url, api_key=api_key)
    from nodes.bridges.openai_provider import OpenAIClient

    return OpenAIClient(
        provider=config.provider, base_url=config.resolved_base_url, api_key=api_key
    )
