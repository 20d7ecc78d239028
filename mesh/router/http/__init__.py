"""The router's OpenAI-compatible HTTP front: a second door onto the same request pipeline.

OpenAI SDK clients (and LiteLLM, LangChain, ...) reach the mesh by changing `base_url`; their
requests get exactly the routing, guards, budgets, ledger and traces of a gRPC call, because
they run through the same `mesh.router.edge.begin` and `Pipeline`. Modules, one job each:
`chat_request` (OpenAI JSON -> GenerateRequest), `chat_response` (reply -> JSON, `mesh`
extension, x-mesh-* headers), `sse` (stream framing), `errors` (MeshError -> envelope),
`edge` (key, bounded body, deadline header), `disconnect` (a hang-up aborts the generation),
`chat` and `models` (the endpoints), `app` (routes and tracing), `server` (uvicorn on the
router's loop), `front` (the wiring RouterRuntime starts and stops).
"""

from mesh.router.http.front import HttpFront

__all__ = ["HttpFront"]
