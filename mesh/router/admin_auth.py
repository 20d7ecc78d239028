"""Who may call PolicyService: the operator's admin key, or an API key with `admin: true`.

The guards package takes an authorizer callable and never imports the router; this is the one
the router passes, combining its admin key (router.guards.admin_key_env / admin_key_file) with
its API keys (router.auth.api_keys), and naming the caller for the policy-change audit. A call
without a key is never an admin call here, not even on a keyless loopback router: changing
what the guards let through takes a credential.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable
from typing import Any

from guards.audit import AuditLog
from guards.errors import AdminKeyMissing, AdminKeyRejected
from guards.policy_service import (
    ADMIN_KEY_CALLER,
    ADMIN_KEY_HEADER,
    CALLER_METADATA,
    Authorize,
    Caller,
    PolicyServicer,
)
from guards.policy_store import PolicyStore
from mesh.config import RouterConfig
from mesh.contract.errors import Code, MeshError
from mesh.router.auth import API_KEY_HEADER, AdminRequired, ApiKeyAuth

Context = Any  # grpc.aio.ServicerContext; grpc ships no usable type here


def admin_api_disabled(context: Context) -> None:
    raise MeshError(
        "the admin API is disabled: configure an admin key (router.guards.admin_key_env) or "
        "an API key with admin: true (router.auth.api_keys)",
        code=Code.PERMISSION_DENIED,
        reason="ADMIN_API_DISABLED",
    )


def _headers(metadata: Iterable[tuple[str, str | bytes]] | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for name, value in metadata or ():
        text = value.decode(errors="replace") if isinstance(value, bytes) else value
        out.setdefault(name.lower(), text.strip())
    return out


def _same(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode(), expected.encode())


def policy_authorizer(auth: ApiKeyAuth, admin_key: str | None) -> Authorize:
    """`x-admin-key: KEY` (the admin key), `x-api-key: KEY` (an admin API key), or
    `authorization: Bearer KEY` (either). Returns the Caller for the audit log."""

    def authorize(context: Context) -> Caller:
        headers = _headers(context.invocation_metadata())
        bearer = headers.get("authorization", "")
        bearer = bearer[7:].strip() if bearer.lower().startswith("bearer ") else ""
        given_admin = headers.get(ADMIN_KEY_HEADER, "")
        if given_admin:
            if admin_key and _same(given_admin, admin_key):
                return Caller(ADMIN_KEY_CALLER)
            raise AdminKeyRejected("the key given is not the admin key")
        if bearer and admin_key and _same(bearer, admin_key):
            return Caller(ADMIN_KEY_CALLER)
        key = headers.get(API_KEY_HEADER, "") or bearer
        if not key:
            raise AdminKeyMissing(
                "this call needs the admin key (x-admin-key metadata) or an admin API key "
                "(x-api-key)"
            )
        if not auth.enabled:  # keyless router: any key would pass as the anonymous tenant
            raise AdminKeyRejected("the key given is not the admin key")
        principal = auth.authenticate(key)  # Unauthenticated: no such key
        caller = Caller(f"api-key:{principal.key_name}", principal.tenant)
        if not principal.admin:
            raise AdminRequired(
                "this call needs an admin API key (admin: true in router.auth.api_keys)",
                metadata={"tenant": principal.tenant, CALLER_METADATA: caller.name},
            )
        return caller

    return authorize


def policy_servicer(
    config: RouterConfig, auth: ApiKeyAuth, store: PolicyStore, audit: AuditLog | None
) -> PolicyServicer:
    """The router's PolicyService: open to the admin key and admin API keys, disabled (every
    call PERMISSION_DENIED) when neither is configured."""
    admin_key = config.guards.admin_key()
    any_admin_key = any(k.admin for k in config.auth.api_keys)
    authorize = (
        policy_authorizer(auth, admin_key) if admin_key or any_admin_key else admin_api_disabled
    )
    return PolicyServicer(store, authorize, audit)
