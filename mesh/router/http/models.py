"""GET /v1/models: the routing table as OpenAI's model list.

Every model a healthy node serves (as gRPC ListModels reports them), and each alias under its
own id, since a client may send either as `model`. An empty table is an empty list, not an
error: the door works, there is just nothing behind it yet.
"""

from __future__ import annotations

import json

from starlette.requests import Request
from starlette.responses import Response

from mesh.contract.errors import MeshError
from mesh.router.auth import ApiKeyAuth
from mesh.router.http.edge import authenticate
from mesh.router.http.errors import error_response
from mesh.router.pipeline.plan import Planner

# OpenAI's `created` is when a model was made; the routing table does not know, so 0 says so.
_UNKNOWN_CREATED = 0


class ModelList:
    """The endpoint, built once per router."""

    def __init__(self, planner: Planner, auth: ApiKeyAuth) -> None:
        self.planner = planner
        self.auth = auth

    def models(self) -> list[dict[str, object]]:
        owners: dict[str, str] = {}
        for cand in self.planner.candidates():
            if not cand.healthy:
                continue
            for name in (cand.model, *cand.card.aliases):
                owners.setdefault(name, cand.card.provider or "mesh")
        return [
            {"id": name, "object": "model", "created": _UNKNOWN_CREATED, "owned_by": owner}
            for name, owner in sorted(owners.items())
        ]

    async def handle(self, request: Request) -> Response:
        try:
            authenticate(self.auth, request.headers)
        except MeshError as err:
            return error_response(err)
        body = {"object": "list", "data": self.models()}
        return Response(json.dumps(body).encode(), media_type="application/json")
