"""all-MiniLM-L6-v2 sentence embeddings on ONNX Runtime, shared by the router and the guards.

Part of the kernel (beside mesh.config, mesh.contract, mesh.telemetry): the router's tier
estimator and semantic cache and the guards' content-safety model embed with the same model.
`batching.shared_embedder` holds one per pool of users in a process: the router's (one
embedding per new prompt, shared by the estimator and the cache) and the guards' (many runs
for a long text, kept off the router's worker). No torch: see minilm_onnx.py.
"""
