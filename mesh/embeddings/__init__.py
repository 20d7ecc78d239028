"""Sentence embeddings without torch, shared by the router and the guards.

Part of the kernel (beside mesh.config, mesh.contract, mesh.telemetry). Two embedders:
- all-MiniLM-L6-v2 on ONNX Runtime (minilm_onnx.py; ~2 ms a short prompt). `batching.
  shared_embedder` holds one per pool of users in a process: the router's (the tier
  estimate where the static one is unsure) and the guards' (content safety; many runs for a
  long text, kept off the router's worker).
- a static table distilled from it (static.py, static_table.py; ~0.05 ms, on the event loop):
  the semantic cache's vectors and the router's first tier estimate.
"""
