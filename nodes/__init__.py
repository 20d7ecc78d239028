"""Nodes that serve mesh.v1.InferenceService: local engines and external-API bridges."""
