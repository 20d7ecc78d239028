"""PolicyService RBAC and the policy-change audit, on a real grpc.aio server over loopback.

The service is built by mesh.router.admin_auth.policy_servicer from a RouterConfig, as the
router builds it: the admin key, or an API key with `admin: true`, may call it; every
ApplyPolicy (applied, dry run, invalid, denied) is a row in the audit log naming the caller.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import grpc.aio
import pytest

from guards.audit import AuditLog, PolicyChange
from guards.policy_loader import load_policy
from guards.policy_store import PolicyStore
from mesh.config import ApiKeyConfig, AuthSettings, GuardSettings, RouterConfig
from mesh.contract.serving import bound_address, create_server
from mesh.contract.status import error_details
from mesh.router.admin_auth import policy_servicer
from mesh.router.auth import ApiKeyAuth
from mesh.v1 import policy_pb2, policy_pb2_grpc
from tests.process import run_mesh

ADMIN_KEY = "admin-key-for-tests"
OPS_KEY = "ops-key-for-tests"  # admin: true
ACME_KEY = "acme-key-for-tests"  # a tenant's key, admin: false
POLICY = "guards:\n  - name: pii\n    use: pii\n    action: redact\n"
POLICY_2 = POLICY.replace("redact", "flag")
SERVICE = policy_pb2.DESCRIPTOR.services_by_name["PolicyService"].full_name


def key(name: str, secret: str, tenant: str, admin: bool) -> ApiKeyConfig:
    return ApiKeyConfig(
        name=name, sha256=hashlib.sha256(secret.encode()).hexdigest(), tenant=tenant, admin=admin
    )


@dataclass
class Admin:
    stub: policy_pb2_grpc.PolicyServiceStub
    store: PolicyStore
    audit: AuditLog
    address: str
    audit_url: str

    async def changes(self) -> list[PolicyChange]:
        return list(reversed(await self.audit.policy_changes()))  # oldest first


@contextlib.asynccontextmanager
async def serve(
    tmp_path: Path, *, admin_key: str | None, api_keys: list[ApiKeyConfig]
) -> AsyncIterator[Admin]:
    guards = GuardSettings(watch=False, audit_url=f"sqlite+aiosqlite:///{tmp_path / 'audit.db'}")
    if admin_key is not None:
        (tmp_path / "admin.key").write_text(admin_key)
        guards = guards.model_copy(update={"admin_key_file": str(tmp_path / "admin.key")})
    config = RouterConfig(guards=guards, auth=AuthSettings(api_keys=api_keys))
    store = PolicyStore(load_policy(POLICY))
    audit = AuditLog.from_settings(guards)
    await audit.start()
    servicer = policy_servicer(config, ApiKeyAuth(api_keys), store, audit)
    bound = create_server(
        "127.0.0.1:0", [(policy_pb2_grpc.add_PolicyServiceServicer_to_server, servicer, SERVICE)]
    )
    await bound.server.start()
    address = bound_address("127.0.0.1:0", bound.port)
    try:
        async with grpc.aio.insecure_channel(address) as channel:
            stub = policy_pb2_grpc.PolicyServiceStub(channel)  # type: ignore[no-untyped-call]
            yield Admin(stub, store, audit, address, guards.resolved_audit_url())
    finally:
        await bound.stop(0.2)
        await audit.close()


@pytest.fixture
async def admin(tmp_path: Path) -> AsyncIterator[Admin]:
    keys = [key("ops", OPS_KEY, "ops", True), key("acme", ACME_KEY, "acme", False)]
    async with serve(tmp_path, admin_key=ADMIN_KEY, api_keys=keys) as served:
        yield served


async def refusal(call: object) -> tuple[str, str]:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call  # type: ignore[misc]
    details = error_details(info.value)
    return details.code, details.reason


def apply(text: str, dry_run: bool = False) -> policy_pb2.ApplyPolicyRequest:
    return policy_pb2.ApplyPolicyRequest(policy_yaml=text, dry_run=dry_run)


async def test_an_admin_api_key_may_apply_and_is_audited_by_name(admin: Admin) -> None:
    before = admin.store.version
    got = await admin.stub.GetPolicy(
        policy_pb2.GetPolicyRequest(), metadata=(("x-api-key", OPS_KEY),)
    )
    assert got.version == before
    applied = await admin.stub.ApplyPolicy(apply(POLICY_2), metadata=(("x-api-key", OPS_KEY),))
    assert applied.applied and admin.store.version == applied.version != before
    # Bearer works for either kind of key.
    dry = await admin.stub.ApplyPolicy(
        apply(POLICY, dry_run=True), metadata=(("authorization", f"Bearer {OPS_KEY}"),)
    )
    assert not dry.applied and admin.store.version == applied.version
    [first, second] = await admin.changes()
    assert (first.actor, first.tenant, first.dry_run, first.outcome) == (
        "api-key:ops",
        "ops",
        False,
        "applied",
    )
    assert (first.version_before, first.version_after) == (before, applied.version)
    assert (second.actor, second.dry_run, second.outcome) == ("api-key:ops", True, "validated")
    assert (second.version_before, second.version_after) == (applied.version, dry.version)


async def test_a_tenant_key_is_denied_and_the_attempt_audited(admin: Admin) -> None:
    before = admin.store.version
    code, reason = await refusal(
        admin.stub.ApplyPolicy(apply(POLICY_2), metadata=(("x-api-key", ACME_KEY),))
    )
    assert (code, reason) == ("PERMISSION_DENIED", "ADMIN_REQUIRED")
    assert admin.store.version == before
    code, reason = await refusal(
        admin.stub.GetPolicy(policy_pb2.GetPolicyRequest(), metadata=(("x-api-key", "nope"),))
    )
    assert (code, reason) == ("UNAUTHENTICATED", "UNAUTHENTICATED")
    code, reason = await refusal(admin.stub.ApplyPolicy(apply(POLICY_2)))
    assert (code, reason) == ("UNAUTHENTICATED", "ADMIN_KEY_MISSING")
    code, reason = await refusal(
        admin.stub.ApplyPolicy(apply(POLICY_2), metadata=(("x-admin-key", OPS_KEY),))
    )
    assert (code, reason) == ("PERMISSION_DENIED", "ADMIN_KEY_REJECTED")  # not the admin key
    changes = await admin.changes()
    assert [(c.actor, c.outcome, c.reason) for c in changes] == [
        ("api-key:acme", "denied", "ADMIN_REQUIRED"),
        ("", "denied", "ADMIN_KEY_MISSING"),
        ("", "denied", "ADMIN_KEY_REJECTED"),
    ]
    assert all(c.version_before == before and not c.version_after for c in changes)
    assert admin.store.version == before


async def test_the_admin_key_still_works_and_invalid_policies_are_audited(admin: Admin) -> None:
    before = admin.store.version
    code, reason = await refusal(
        admin.stub.ApplyPolicy(
            apply("guards:\n  - name: x\n    use: 'logging:basicConfig'\n"),
            metadata=(("x-admin-key", ADMIN_KEY),),
        )
    )
    assert (code, reason) == ("INVALID_ARGUMENT", "INVALID_POLICY")
    applied = await admin.stub.ApplyPolicy(
        apply(POLICY_2), metadata=(("authorization", f"Bearer {ADMIN_KEY}"),)
    )
    invalid, ok = await admin.changes()
    assert (invalid.actor, invalid.outcome, invalid.version_before) == (
        "admin-key",
        "invalid",
        before,
    )
    assert invalid.reason.startswith("api:3: invalid policy at guards[0].use: module 'logging'")
    assert (ok.actor, ok.outcome, ok.version_after) == ("admin-key", "applied", applied.version)


async def test_without_admin_credentials_configured_the_api_is_disabled(tmp_path: Path) -> None:
    keys = [key("acme", ACME_KEY, "acme", False)]
    async with serve(tmp_path, admin_key=None, api_keys=keys) as served:
        code, reason = await refusal(
            served.stub.GetPolicy(
                policy_pb2.GetPolicyRequest(), metadata=(("x-api-key", ACME_KEY),)
            )
        )
    assert (code, reason) == ("PERMISSION_DENIED", "ADMIN_API_DISABLED")


async def test_admin_api_keys_alone_enable_the_api(tmp_path: Path) -> None:
    async with serve(
        tmp_path, admin_key=None, api_keys=[key("ops", OPS_KEY, "ops", True)]
    ) as served:
        got = await served.stub.GetPolicy(
            policy_pb2.GetPolicyRequest(), metadata=(("x-api-key", OPS_KEY),)
        )
        assert got.version == served.store.version
        code, reason = await refusal(
            served.stub.GetPolicy(policy_pb2.GetPolicyRequest(), metadata=(("x-admin-key", "x"),))
        )
        assert (code, reason) == ("PERMISSION_DENIED", "ADMIN_KEY_REJECTED")


async def test_a_keyless_router_grants_no_admin_to_any_presented_key(tmp_path: Path) -> None:
    """With no API keys configured every request is the anonymous default tenant; a bearer
    token that is not the admin key must not pass as that tenant's (loopback) admin right."""
    async with serve(tmp_path, admin_key=ADMIN_KEY, api_keys=[]) as served:
        code, reason = await refusal(
            served.stub.ApplyPolicy(apply(POLICY_2), metadata=(("authorization", "Bearer guess"),))
        )
        assert (code, reason) == ("PERMISSION_DENIED", "ADMIN_KEY_REJECTED")
        code, reason = await refusal(
            served.stub.ApplyPolicy(apply(POLICY_2), metadata=(("x-api-key", "guess"),))
        )
        assert (code, reason) == ("PERMISSION_DENIED", "ADMIN_KEY_REJECTED")
        code, reason = await refusal(served.stub.ApplyPolicy(apply(POLICY_2)))
        assert (code, reason) == ("UNAUTHENTICATED", "ADMIN_KEY_MISSING")


async def test_mesh_policy_apply_as_an_admin_api_key_then_mesh_audit_lists_it(
    admin: Admin, tmp_path: Path
) -> None:
    """The CLI end to end: `mesh policy apply --api-key` (MESH_API_KEY) and
    `mesh audit --policy-changes`, as real subprocesses against the served PolicyService."""
    env = {k: v for k, v in os.environ.items() if k not in {"MESH_ADMIN_KEY", "MESH_API_KEY"}}
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY_2, encoding="utf-8")
    before = admin.store.version
    out = await asyncio.to_thread(
        run_mesh, "policy", "apply", str(policy), "--address", admin.address,
        env={**env, "MESH_API_KEY": OPS_KEY}, timeout_s=120,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == f"applied {admin.store.version} (previous {before})"
    denied = await asyncio.to_thread(
        run_mesh, "policy", "apply", str(policy), "--address", admin.address, "--dry-run",
        env={**env, "MESH_API_KEY": ACME_KEY}, timeout_s=120,
    )  # fmt: skip
    assert denied.returncode == 2
    assert denied.stderr.startswith("mesh: PERMISSION_DENIED (ADMIN_REQUIRED): ")
    assert ACME_KEY not in denied.stderr
    listed = await asyncio.to_thread(
        run_mesh, "audit", "--db", admin.audit_url, "--policy-changes", env=env, timeout_s=120
    )
    assert listed.returncode == 0, listed.stderr
    rows = [json.loads(line) for line in listed.stdout.splitlines()]
    assert [(r["actor"], r["dry_run"], r["outcome"]) for r in rows] == [
        ("api-key:acme", True, "denied"),  # newest first
        ("api-key:ops", False, "applied"),
    ]
    assert rows[1]["version_before"] == before
    assert rows[1]["version_after"] == admin.store.version
    assert OPS_KEY not in listed.stdout and ACME_KEY not in listed.stdout


async def test_every_change_of_the_watched_policy_file_is_audited_beside_the_api(
    tmp_path: Path,
) -> None:
    """The file watcher's changes land in the same policy-change log as ApplyPolicy: applied
    (versions before and after), refused (why, once for a file saved broken again and again),
    unreadable; a save that changes nothing is no row. `mesh audit --policy-changes` lists
    them with actor file:PATH and source file."""
    audit_url = f"sqlite+aiosqlite:///{tmp_path / 'audit.db'}"
    audit = AuditLog.from_settings(GuardSettings(audit_url=audit_url))
    await audit.start()
    path = tmp_path / "policy.yaml"
    path.write_text(POLICY, encoding="utf-8")
    store = PolicyStore(load_policy(POLICY))
    first = store.version
    store.watch(path, interval_s=0.05, audit=audit)

    async def rewrite(text: str, rows: int, *, wait_s: float = 10.0) -> list[PolicyChange]:
        """Write the file, then wait until the log has `rows` rows (at most `wait_s`)."""
        stamp = path.stat().st_mtime_ns if path.exists() else 0
        path.write_text(text, encoding="utf-8")
        os.utime(path, ns=(stamp + 10**9, stamp + 10**9))  # a new mtime, however fast we are
        changes: list[PolicyChange] = []
        for _ in range(int(wait_s / 0.05)):
            await asyncio.sleep(0.05)
            changes = list(reversed(await audit.policy_changes()))
            if len(changes) >= rows:
                break
        return changes

    try:
        await rewrite(POLICY_2, 1)
        assert store.version != first
        second = store.version
        broken = "guards:\n  - name: pii\n    use: no_such_guard\n"
        await rewrite(broken, 2)
        await rewrite(broken, 3, wait_s=0.5)  # the same refusal again (10 polls): no new row
        path.unlink()  # unreadable: a row
        for _ in range(200):
            await asyncio.sleep(0.05)
            if len(await audit.policy_changes()) >= 3:
                break
        await rewrite(POLICY_2, 4, wait_s=0.5)  # the active policy again: no change, no row
        changes = list(reversed(await audit.policy_changes()))
    finally:
        await store.stop_watching()
        await audit.close()
    actor = f"file:{path}"
    assert [(c.actor, c.source, c.outcome) for c in changes] == [
        (actor, "file", "applied"),
        (actor, "file", "invalid"),
        (actor, "file", "failed"),
    ], changes
    assert (changes[0].version_before, changes[0].version_after) == (first, second)
    assert "no_such_guard" in changes[1].reason and changes[1].version_before == second
    assert changes[2].reason.startswith("unreadable: ")
    assert store.version == second
    listed = await asyncio.to_thread(
        run_mesh, "audit", "--db", audit_url, "--policy-changes", timeout_s=120
    )
    assert listed.returncode == 0, listed.stderr
    rows = [json.loads(line) for line in listed.stdout.splitlines()]
    assert [(r["actor"], r["source"], r["outcome"]) for r in rows] == [
        (actor, "file", "failed"),
        (actor, "file", "invalid"),
        (actor, "file", "applied"),
    ]
