"""Inference Mesh: one typed gRPC endpoint for self-hosted and external LLMs."""

__version__ = "0.1.0"
