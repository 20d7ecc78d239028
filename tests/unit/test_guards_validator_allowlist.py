"""`use: module:Class` loads guardrails-ai validators from the operator's allow-list only:
checked before any import, the class checked before any call; a validator that fails at run
time under `on_error: open` is reported as an error (flag + GUARD_ERROR), not as an allow."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import ValidationError

from guards import validator_sandbox
from guards.audit import AuditLog, DecisionQuery
from guards.errors import InvalidPolicy
from guards.guardrails_adapter import module_allowed
from guards.hooks import InputCheck
from guards.policy_loader import DEFAULT_RULES, LoadRules, load_policy
from guards.policy_store import PolicyStore
from guards.proto_convert import verdicts_to_proto
from guards.verdict import Action, Stage
from mesh.config import GuardSettings
from mesh.v1 import types_pb2

pytest.importorskip("guardrails", reason="the `guardrails` extra is not installed")

PROBE = "mesh_probe_untrusted"  # a module a policy names; importing it leaves a mark


@pytest.fixture
def probe(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """An importable module that writes `imported` when imported and `called` when its
    `Thing` is called, as `logging:basicConfig` or `this:s` act when imported or called."""
    marks = tmp_path / "marks"
    marks.mkdir()
    (tmp_path / f"{PROBE}.py").write_text(
        textwrap.dedent(
            f"""
            from pathlib import Path
            Path({str(marks)!r}, "imported").touch()

            class Thing:
                def __init__(self, **kwargs):
                    Path({str(marks)!r}, "called").touch()
            """
        ),
        encoding="utf-8",
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    # Sandbox workers take the router's sys.path when they start: ones an earlier test started
    # would not see this folder.
    validator_sandbox.shutdown()
    yield marks
    sys.modules.pop(PROBE, None)
    validator_sandbox.shutdown()


def policy(use: str, **extra: str) -> str:
    fields = "".join(f"\n    {k}: {v}" for k, v in extra.items())
    return f"guards:\n  - name: g\n    use: '{use}'{fields}\n"


@pytest.mark.parametrize(
    "use",
    [
        f"{PROBE}:Thing",
        "logging:basicConfig",
        "this:s",
        "collections:OrderedDict",
        "types:SimpleNamespace",
        "guardrails_aix.evil:Thing",  # a prefix, not a submodule
        "guardrails_ai:Thing",  # the package itself is not below it
        "guardrails_ai.regex_match:RegexMatch.__init__",  # not a class name
        ".relative:Thing",
    ],
)
def test_not_allow_listed_is_invalid_at_its_line_with_nothing_imported(
    probe: Path, use: str
) -> None:
    module = use.partition(":")[0]
    was_loaded = module in sys.modules
    with pytest.raises(InvalidPolicy) as info:
        load_policy(policy(use), "team.yaml")
    assert info.value.message.startswith("team.yaml:3: invalid policy at guards[0].use: ")
    assert info.value.metadata["field"] == "guards[0].use"
    assert not (probe / "imported").exists()
    assert (module in sys.modules) == was_loaded  # `this` prints the Zen when imported


def test_a_refused_tenant_guard_stops_the_whole_policy_before_any_import(probe: Path) -> None:
    """The allow-list is checked for every guard of the document before the first is built,
    so a refused policy imports nothing, not even its allowed modules."""
    rules = LoadRules(validator_modules=(PROBE,))
    text = (
        policy(f"{PROBE}:Thing")
        + "tenants:\n  acme:\n    add:\n      - name: h\n        use: 'logging:basicConfig'\n"
    )
    with pytest.raises(InvalidPolicy) as info:
        load_policy(text, "team.yaml", rules)
    assert "team.yaml:8: invalid policy at tenants.acme.add[0].use" in info.value.message
    assert not (probe / "imported").exists()


def test_allowed_module_but_not_a_validator_is_never_called(probe: Path) -> None:
    rules = LoadRules(validator_modules=(PROBE,))
    with pytest.raises(InvalidPolicy, match="is not a guardrails-ai Validator subclass"):
        load_policy(policy(f"{PROBE}:Thing"), "team.yaml", rules)
    assert (probe / "imported").exists()  # the operator allowed the import
    assert not (probe / "called").exists()
    with pytest.raises(InvalidPolicy, match="is not a guardrails-ai Validator subclass"):
        load_policy(
            policy("tests.fixtures.validators:not_a_validator"),
            "team.yaml",
            LoadRules(validator_modules=("tests.fixtures.*",)),
        )


def test_the_default_allow_list_loads_guardrails_validators() -> None:
    assert DEFAULT_RULES.validator_modules == ("guardrails_ai.*", "guardrails.hub.*")
    loaded = load_policy(policy("guardrails_ai.regex_match:RegexMatch", params="{regex: 'a'}"))
    assert loaded.guards_for("")[0].guard.__class__.__name__ == "GuardrailsGuard"
    with pytest.raises(InvalidPolicy, match="nothing was imported"):
        load_policy(policy("guardrails_ai.regex_match:RegexMatch"), rules=LoadRules(()))


def test_module_patterns() -> None:
    allowed = ("guardrails_ai.*", "exact.mod")
    assert module_allowed("guardrails_ai.regex_match", allowed)
    assert module_allowed("guardrails_ai.a.b", allowed)
    assert module_allowed("exact.mod", allowed)
    assert not module_allowed("guardrails_ai", allowed)
    assert not module_allowed("guardrails_aix.y", allowed)
    assert not module_allowed("exact.mod.sub", allowed)
    assert not module_allowed("exact", allowed)


def test_the_allow_list_is_operator_config_and_validated() -> None:
    settings = GuardSettings(validator_modules=("guardrails_ai.*", "acme_validators.*"))
    assert LoadRules.of(settings).validator_modules == ("guardrails_ai.*", "acme_validators.*")
    for bad in ("*", "guardrails_ai.**", "os; rm", "a..b", ""):
        with pytest.raises(ValidationError):
            GuardSettings(validator_modules=(bad,))
    with pytest.raises(InvalidPolicy, match="Extra inputs"):  # never from the policy itself
        load_policy("validator_modules: ['logging']\nguards: []\n")


FAILING = "tests.fixtures.validators:FailingValidatorForTests"
RULES = LoadRules(validator_modules=("guardrails_ai.*", "tests.fixtures.validators"))


async def test_a_validator_failing_under_on_error_open_is_an_error_not_an_allow() -> None:
    """`types:SimpleNamespace` once passed lint, raised on every request and, open, allowed
    each one with nothing to show; a failing validator is now a flag with GUARD_ERROR in the
    verdict (and so in the proto and the audit log)."""
    store = PolicyStore(load_policy(policy(FAILING, timeout_ms="5000"), rules=RULES), rules=RULES)
    result = await store.chain(Stage.INPUT).run(InputCheck("any text"))
    assert result.action is Action.FLAG and not result.blocked
    [outcome] = result.outcomes
    assert outcome.error_type == "RuntimeError"
    assert [f.type for f in outcome.verdict.findings] == ["GUARD_ERROR"]
    [proto] = verdicts_to_proto(result.outcomes, result.policy_version)
    assert proto.action == types_pb2.GUARD_ACTION_FLAG
    assert [f.type for f in proto.findings] == ["GUARD_ERROR"]

    audit = AuditLog("sqlite+aiosqlite:///:memory:")
    await audit.start()
    try:
        written = await audit.record(
            result.outcomes,
            text="any text",
            tenant="default",
            request_id="r1",
            policy_version=result.policy_version,
        )
        rows, _ = await audit.query(DecisionQuery())
    finally:
        await audit.close()
    assert written == 1
    assert rows[0].action == "flag" and [f.type for f in rows[0].findings] == ["GUARD_ERROR"]

    closed = load_policy(policy(FAILING, timeout_ms="5000", on_error="closed"), rules=RULES)
    blocked = await PolicyStore(closed).chain(Stage.INPUT).run(InputCheck("any text"))
    assert blocked.blocked


@pytest.mark.parametrize(
    "schema",
    [
        '{$ref: "http://127.0.0.1:9/x.json"}',
        '{$id: "http://127.0.0.1:9/a", properties: {a: {$ref: "b.json"}}}',
        '{items: [{$dynamicRef: "https://example.org/s"}]}',
    ],
)
def test_a_json_schema_cannot_make_the_router_fetch_a_url(schema: str) -> None:
    """jsonschema resolves a remote $ref by an HTTP request while validating a response (an
    audit hook saw urllib.Request and socket.connect to the $ref's host): refused at load."""
    text = "guards:\n  - name: j\n    use: json_schema\n    stage: output\n    params:\n"
    text += f"      schema: {schema}\n"
    with pytest.raises(InvalidPolicy) as info:
        load_policy(text, "team.yaml")
    assert info.value.message.startswith("team.yaml:6: invalid policy at guards[0].params.schema")
    assert "only local references" in info.value.message
    local = '{$defs: {a: {type: string}}, $ref: "#/$defs/a"}'
    assert load_policy(text.replace(schema, local)).guards_for("")[0].spec.use == "json_schema"
