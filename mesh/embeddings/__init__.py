"""all-MiniLM-L6-v2 sentence embeddings on ONNX Runtime, shared by the router and the guards.

Part of the kernel (beside mesh.config, mesh.contract, mesh.telemetry): the router's tier
estimator and semantic cache and the guards' content-safety model embed with the same model,
and one process holds it once (`batching.shared_embedder`), so a prompt the input guards
embedded is not embedded again by the cache. No torch: see minilm_onnx.py.
"""
