"""Who may change the routing table: nodes presenting the shared registration token.

Register, Heartbeat and Deregister decide where traffic goes, so with a token configured they
need `x-mesh-node-token: <token>` metadata. ListNodes stays open: `mesh nodes` reads it, and it
only shows what already serves. Only the token's SHA-256 is kept, and a presented token is
hashed before `hmac.compare_digest`, so timing reveals neither content nor length.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Iterable

from mesh.config import RegistrySettings, is_loopback
from mesh.contract.errors import Code, MeshError
from mesh.contract.node_token import NODE_TOKEN_HEADER, NodeToken

log = logging.getLogger(__name__)


class NodeTokenMissing(MeshError):
    """A registry write came without the registration token."""

    code = Code.UNAUTHENTICATED
    reason = "NODE_TOKEN_MISSING"


class NodeTokenRejected(MeshError):
    """A registry write came with a token that is not the registration token."""

    code = Code.UNAUTHENTICATED
    reason = "NODE_TOKEN_REJECTED"


def _digest(value: str) -> bytes:
    return hashlib.sha256(value.encode()).digest()


class NodeTokenCheck:
    """Verifies registry calls' metadata against one token; open when there is none."""

    def __init__(self, token: NodeToken | None) -> None:
        self._digest = _digest(token.value) if token is not None else None

    @property
    def enabled(self) -> bool:
        return self._digest is not None

    def __repr__(self) -> str:
        return f"NodeTokenCheck(enabled={self.enabled})"

    def verify(self, metadata: Iterable[tuple[str, str | bytes]] | None) -> None:
        """Raise NodeTokenMissing / NodeTokenRejected unless the metadata carries the token."""
        if self._digest is None:
            return
        presented = next(
            (value for key, value in metadata or () if key.lower() == NODE_TOKEN_HEADER), None
        )
        if isinstance(presented, bytes):
            presented = presented.decode(errors="replace")
        if not presented:
            raise NodeTokenMissing(
                f"registry writes need the registration token ({NODE_TOKEN_HEADER} metadata)",
                metadata={"header": NODE_TOKEN_HEADER},
            )
        if not hmac.compare_digest(_digest(presented), self._digest):
            raise NodeTokenRejected(
                "the registration token given is not this router's",
                metadata={"header": NODE_TOKEN_HEADER},
            )


def warn_if_registration_open(listen: str, settings: RegistrySettings) -> bool:
    """At start: one warning when other machines can reach a router that takes any node.

    Returns whether it warned. On loopback an open registry is the embedded default and fine.
    """
    if is_loopback(listen) or settings.token() is not None:
        return False
    log.warning(
        "node registration is open: anything that reaches %s may register a node and attract "
        "traffic; set router.registry.token_env or router.registry.token_file",
        listen,
    )
    return True
