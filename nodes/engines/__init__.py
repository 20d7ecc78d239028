"""Inference backends behind a node: vLLM, transformers, and a fake engine for mesh tests."""

from __future__ import annotations

from mesh.config import NodeConfig
from nodes.engines.base import InferenceBackend


def create_backend(config: NodeConfig) -> InferenceBackend:
    """Build the backend a node config names (imports each engine only when chosen)."""
    if config.engine == "vllm":
        from nodes.engines.vllm import VllmBackend

        return VllmBackend(config)
    if config.engine == "transformers":
        from nodes.engines.transformers import TransformersBackend

        return TransformersBackend(config)
    if config.engine == "bridge":
        # A bridge needs its provider, key source and prices: nodes.bridges builds it.
        raise ValueError(f"node {config.id}: bridge nodes are built by nodes.bridges")
    from nodes.engines.fake import FakeEngine

    return FakeEngine(model_id=config.model, context_window=config.context_window or 8192)
