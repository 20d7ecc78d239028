"""The router's OpenAI-compatible HTTP front: a second door onto the same request pipeline.

OpenAI SDK clients (and LiteLLM, LangChain, ...) reach the mesh by changing `base_url`; their
requests get exactly the routing, guards, budgets, ledger and traces of a gRPC call, because
they run through the same `mesh.router.edge.begin` and `Pipeline`. Modules, one job each:

- wire formats (`dialect` says what one provides): `chat_request` / `chat_response` (OpenAI
  chat completions), `messages_request` / `messages_response` (Anthropic Messages);
- shared by both: `endpoint` (one request through edge and pipeline), `sse` (a stream's body),
  `extension` (the `mesh` object, x-mesh-* headers), `errors` (MeshError -> status and
  envelope), `edge` (key, bounded body, deadline header), `disconnect` (a hang-up aborts the
  generation), `models` (GET /v1/models);
- serving: `app` (routes, tracing), `server` (uvicorn on the router's loop), `front` (the
  wiring RouterRuntime starts and stops).
"""

from mesh.router.http.front import HttpFront

__all__ = ["HttpFront"]
