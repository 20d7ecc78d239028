"""API keys to tenants.

Config holds only SHA-256 hashes of keys, so a leaked mesh.yaml leaks no credential. A presented
key is hashed and compared against every configured hash with `hmac.compare_digest`, without
stopping at the first match, so timing says nothing about which hash matched or how close a guess
was. With no keys configured (the embedded default on loopback) every request is tenant `default`.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from mesh.config import DEFAULT_TENANT, ApiKeyConfig
from mesh.contract.errors import Code, MeshError

API_KEY_HEADER = "x-api-key"


class Unauthenticated(MeshError):
    """Missing or unknown API key."""

    code = Code.UNAUTHENTICATED
    reason = "UNAUTHENTICATED"


class AdminRequired(MeshError):
    """The key is valid but lacks the admin scope (PolicyService)."""

    code = Code.PERMISSION_DENIED
    reason = "ADMIN_REQUIRED"


@dataclass(frozen=True)
class Principal:
    """Who is calling."""

    tenant: str
    admin: bool
    key_name: str  # "" when no keys are configured


def hash_api_key(key: str) -> str:
    """The hex SHA-256 that goes into mesh.yaml for a key."""
    return hashlib.sha256(key.encode()).hexdigest()


def api_key_from_metadata(metadata: Iterable[tuple[str, str | bytes]] | None) -> str | None:
    """The key from `x-api-key`, or from `authorization: Bearer <key>`."""
    bearer = None
    for name, value in metadata or ():
        text = value.decode(errors="replace") if isinstance(value, bytes) else value
        lname = name.lower()
        if lname == API_KEY_HEADER and text:
            return text.strip()
        if lname == "authorization" and text.lower().startswith("bearer "):
            bearer = text[7:].strip()
    return bearer or None


class ApiKeyAuth:
    """Resolves a presented key to a Principal."""

    def __init__(self, keys: Sequence[ApiKeyConfig] = (), anonymous_admin: bool = True) -> None:
        """`anonymous_admin`: whether the keyless default tenant may use PolicyService.

        Pass `is_loopback(listen)` so only a router reachable from this machine alone runs
        keyless with admin rights.
        """
        self._keys = [(bytes.fromhex(k.sha256), k) for k in keys]
        self._anonymous_admin = anonymous_admin

    @property
    def enabled(self) -> bool:
        return bool(self._keys)

    def authenticate(self, api_key: str | None) -> Principal:
        if not self._keys:
            return Principal(DEFAULT_TENANT, self._anonymous_admin, "")
        if not api_key:
            raise Unauthenticated(
                "an API key is required (x-api-key metadata, or --api-key / MESH_API_KEY)"
            )
        presented = hashlib.sha256(api_key.encode()).digest()
        found: ApiKeyConfig | None = None
        for digest, config in self._keys:  # no early exit: constant work per configured key
            if hmac.compare_digest(presented, digest):
                found = config
        if found is None:
            raise Unauthenticated("unknown API key")
        return Principal(found.tenant, found.admin, found.name)

    def authenticate_metadata(
        self, metadata: Iterable[tuple[str, str | bytes]] | None
    ) -> Principal:
        return self.authenticate(api_key_from_metadata(metadata))

    @staticmethod
    def require_admin(principal: Principal) -> None:
        if not principal.admin:
            raise AdminRequired(
                "this call needs an admin API key", metadata={"tenant": principal.tenant}
            )
