"""Click commands for security teams: policy lint/test/apply, audit, guard-eval.

The `mesh` group loads them lazily by import path (mesh.cli.COMMANDS), so this module imports
only click at the top: the policy loader pulls the detectors, the audit log SQLAlchemy. An invalid
policy (InvalidPolicy), a refused call or an unreadable file is reported by the `mesh`
command's one error boundary (mesh.cli.errors) as one line.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from mesh.cli.options import (
    api_key_option,
    client_tls_options,
    config_option,
    json_option,
    target_option,
)
from mesh.cli.since import since_option

if TYPE_CHECKING:
    from guards.audit import PolicyChange
    from guards.policy_loader import LoadRules
    from guards.policy_store import PolicyStore
    from mesh.config import ClientTls

_RULES_HELP = (
    "mesh.yaml whose router.guards.validator_modules a `module:Class` must match. "
    "Default: guardrails_ai.* and guardrails.hub.*"
)


def _rules(config_path: str | None) -> LoadRules:
    """The operator's load rules: from --config's router.guards, else the defaults."""
    from guards.policy_loader import DEFAULT_RULES, LoadRules
    from mesh.cli.options import load_mesh_config

    if config_path is None:
        return DEFAULT_RULES
    return LoadRules.of(load_mesh_config(config_path).router.guards)


@click.group("policy")
def policy() -> None:
    """Guard policies: lint, test, apply."""


@policy.command("lint")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@config_option(help=_RULES_HELP)
def lint(file: Path, config_path: str | None) -> None:
    """Validate FILE; prints its version, or file:line, field and reason (exit 2).

    Checks what the router checks, with no side effect: a `use: module:Class` outside the
    allow-list is refused before anything is imported."""
    from guards.policy_loader import load_policy, read_policy_file

    rules = _rules(config_path)
    loaded = load_policy(read_policy_file(file, rules), str(file), rules)
    click.echo(f"ok {loaded.version} ({len(loaded.policy.guards)} guards)")


@policy.command("test")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("cases", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@config_option(help=_RULES_HELP)
def test(file: Path, cases: Path, config_path: str | None) -> None:
    """Run CASES.jsonl ({"text", "expect": allow|block|redact|flag, "stage"?, "tenant"?,
    "redacted"?}) against FILE; prints a diff per mismatch and exits 1 if any."""
    from guards.policy_store import PolicyStore

    store = PolicyStore.from_file(file, rules=_rules(config_path))
    rows = [
        json.loads(line) for line in cases.read_text(encoding="utf-8").splitlines() if line.strip()
    ]
    failures = asyncio.run(_run_cases(store, rows))
    for line in failures:
        click.echo(line)
    click.echo(f"{len(rows) - len(failures)} passed, {len(failures)} failed")
    if failures:
        sys.exit(1)


async def _run_cases(store: PolicyStore, rows: list[dict[str, Any]]) -> list[str]:
    from guards.hooks import InputCheck, OutputFinalCheck
    from guards.verdict import Stage

    failures = []
    for i, row in enumerate(rows, 1):
        stage = Stage(row.get("stage", "input"))
        tenant = row.get("tenant", "default")
        check = (
            InputCheck(row["text"], tenant)
            if stage is Stage.INPUT
            else OutputFinalCheck(row["text"], tenant)
        )
        result = await store.chain(stage, tenant).run(check)
        got = result.action.value
        if got != row["expect"]:
            guards = ",".join(o.guard for o in result.non_allow()) or "-"
            failures.append(
                f"case {i}: -expected {row['expect']}\n        +got      {got} (guards: {guards})"
            )
        elif "redacted" in row and row["redacted"] != result.text:
            failures.append(
                f"case {i}: -expected text {row['redacted']!r}\n"
                f"        +got           {result.text!r}"
            )
    return failures


@policy.command("apply")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@target_option("--address")
@click.option("--admin-key", envvar="MESH_ADMIN_KEY", default=None, help="or MESH_ADMIN_KEY")
@api_key_option
@click.option("--dry-run", is_flag=True, help="validate on the server, do not install")
@client_tls_options
def apply(
    file: Path,
    target: str,
    admin_key: str | None,
    api_key: str | None,
    dry_run: bool,
    tls: ClientTls | None,
) -> None:
    """Install FILE on a running router through PolicyService.ApplyPolicy, as the admin key
    or an API key with `admin: true` (the admin key wins when both are given)."""
    from guards.policy_loader import read_policy_file
    from mesh.client import open_channel
    from mesh.v1 import policy_pb2, policy_pb2_grpc

    if admin_key is not None:
        metadata = (("x-admin-key", admin_key),)
    elif api_key is not None:
        metadata = (("x-api-key", api_key),)
    else:
        raise click.UsageError("give --admin-key (MESH_ADMIN_KEY) or an admin --api-key")
    text = read_policy_file(file)

    async def call() -> policy_pb2.ApplyPolicyResponse:
        async with open_channel(target, tls) as channel:
            stub = policy_pb2_grpc.PolicyServiceStub(channel)  # type: ignore[no-untyped-call]
            request = policy_pb2.ApplyPolicyRequest(policy_yaml=text, dry_run=dry_run)
            response: policy_pb2.ApplyPolicyResponse = await stub.ApplyPolicy(
                request, metadata=metadata, timeout=30
            )
            return response

    response = asyncio.run(call())
    state = "validated (dry run)" if dry_run else "applied"
    click.echo(f"{state} {response.version} (previous {response.previous_version})")


@click.command("audit")
@click.option(
    "--db",
    default=None,
    help="SQLAlchemy URL. Default: guard_audit.db in the data dir, where the router writes.",
)
@since_option
@click.option("--guard", default="")
@click.option("--tenant", default="")
@click.option("--limit", default=50, show_default=True)
@click.option("--page-token", default="")
@click.option(
    "--policy-changes",
    is_flag=True,
    help="list ApplyPolicy calls (who, dry run, versions, outcome) instead of decisions",
)
def audit(
    db: str | None,
    since: dt.datetime | None,
    guard: str,
    tenant: str,
    limit: int,
    page_token: str,
    policy_changes: bool,
) -> None:
    """Print audited guard decisions, newest first (one JSON object a line)."""
    from guards.audit import AuditLog, DecisionQuery

    async def run() -> str:
        from mesh.config import GuardSettings

        log = AuditLog(db or GuardSettings().resolved_audit_url())
        await log.start()
        try:
            if policy_changes:
                for c in await log.policy_changes(since=since, limit=limit):
                    click.echo(json.dumps(_change_json(c)))
                return ""
            rows, token = await log.query(DecisionQuery(tenant, guard, since, limit, page_token))
        finally:
            await log.close()
        for d in rows:
            click.echo(
                json.dumps(
                    {
                        "time": d.decided_at.isoformat(),
                        "request_id": d.request_id,
                        "tenant": d.tenant,
                        "guard": d.guard,
                        "stage": d.stage,
                        "action": d.action,
                        "mode": d.mode,
                        "policy_version": d.policy_version,
                        "content_sha256": d.content_sha256,
                        "findings": [f.__dict__ for f in d.findings],
                        **({"error_type": d.error_type} if d.error_type else {}),
                    }
                )
            )
        return token

    if policy_changes and (guard or tenant or page_token):
        raise click.UsageError("--policy-changes takes only --since and --limit")
    token = asyncio.run(run())
    if token:
        click.echo(f"next page: --page-token {token}", err=True)


def _change_json(c: PolicyChange) -> dict[str, Any]:
    return {
        "time": c.changed_at.isoformat() if c.changed_at else None,
        "actor": c.actor,
        "tenant": c.tenant,
        "dry_run": c.dry_run,
        "outcome": c.outcome,
        "version_before": c.version_before,
        "version_after": c.version_after,
        "source": c.source,
        "reason": c.reason,
    }


@click.command("guard-eval")
@click.argument("dataset", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--policy", "policy_file", type=click.Path(exists=True, dir_okay=False, path_type=Path)
)
@click.option(
    "--split",
    type=click.Choice(["all", "heldout", "train"]),
    default="all",
    show_default=True,
    help="rows by the fixed hash of their id (guards/dev_split.py): heldout = never trained or "
    "tuned on, the figures to report",
)
@json_option("one JSON object keyed by_category, by_source, by_entity")
def guard_eval(dataset: Path, policy_file: Path | None, split: str, as_json: bool) -> None:
    """Recall per attack category, false positives per benign source, PII recall/precision."""
    from guards.evaluate import evaluate

    figures = evaluate(dataset, policy_file, split)
    if as_json:
        click.echo(json.dumps(figures, indent=2))
        return
    click.echo(f"policy {figures['policy_version']}, split {split}, {figures['rows']} rows")
    for key, title in (
        ("by_category", "attack recall"),
        ("by_source", "benign false positives"),
        ("by_entity", "PII"),
    ):
        if figures[key]:
            click.echo(f"{title}:")
            for name, value in figures[key].items():
                click.echo(f"  {name:24s} {json.dumps(value)}")
