"""Bridge nodes: external LLM APIs (OpenAI, Anthropic, any OpenAI-compatible server) behind
mesh.v1.InferenceService.

A bridge is an `InferenceBackend`, so the node servicer gives it validation, health,
reflection, ListModels, admission and registration like any local engine. What differs lives
here: provider SDK calls, price tables, rate limits, retries and provider error mapping. The
provider is treated as untrusted and volatile: its errors are mapped and sanitised, its key
never leaves the SDK client.
"""
