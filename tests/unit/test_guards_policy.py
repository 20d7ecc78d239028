"""Policy loading: precise errors, versions, tenants; the store: apply, races, hot reload, fuzz."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from guards.errors import InvalidPolicy
from guards.hooks import InputCheck
from guards.policy_loader import load_policy
from guards.policy_store import DEFAULT_POLICY_PATH, PolicyStore
from guards.verdict import Action, Stage

BASE = """guards:
  - name: pii
    use: pii
    action: redact
  - name: injection
    use: prompt_injection
    action: block
tenants:
  acme:
    disable: [injection]
    add:
      - name: banned
        use: banned_words
        params: {words: [falcon]}
"""


def test_default_policy_loads() -> None:
    loaded = load_policy(DEFAULT_POLICY_PATH.read_text(), str(DEFAULT_POLICY_PATH))
    assert len(loaded.version) == 16


def test_version_is_content_hash_not_formatting() -> None:
    a = load_policy(BASE)
    b = load_policy("# a comment\n" + BASE.replace("action: redact", "action:   redact"))
    c = load_policy(BASE.replace("falcon", "eagle"))
    assert a.version == b.version != c.version


@pytest.mark.parametrize(
    ("text", "line", "field", "reason"),
    [
        (
            "guards:\n  - name: a\n    use: pii\n    actoin: block\n",
            4,
            "guards[0].actoin",
            "Extra inputs",
        ),
        (
            "guards:\n  - name: a\n    use: pii\n    mode: loud\n",
            4,
            "guards[0].mode",
            "'enforce' or 'monitor'",
        ),
        ("guards:\n  - name: a\n    use: nope\n", 3, "guards[0].use", "unknown guard"),
        (
            "guards:\n  - name: a\n    use: pii\n    params:\n      entities: [X]\n",
            5,
            "guards[0].params.entities",
            "unknown PII",
        ),
        (
            "guards:\n  - name: a\n    use: token_limit\n    params:\n      max_tokens: 0\n",
            5,
            "guards[0].params.max_tokens",
            "greater than or equal",
        ),
        ("stream:\n  hold_back_chars: -1\n", 2, "stream.hold_back_chars", "greater than"),
        ("guards: [\n", 2, "", "not valid YAML"),
    ],
)
def test_errors_name_file_line_field_reason(text: str, line: int, field: str, reason: str) -> None:
    with pytest.raises(InvalidPolicy) as info:
        load_policy(text, "team.yaml")
    err = info.value
    assert err.code.value == "INVALID_ARGUMENT" and err.reason == "INVALID_POLICY"
    assert err.message.startswith(f"team.yaml:{line}:"), err.message
    assert field in err.message and reason in err.message
    assert err.metadata["field"] == field


def test_tenant_overrides() -> None:
    loaded = load_policy(BASE)
    assert [g.spec.name for g in loaded.guards_for("")] == ["pii", "injection"]
    assert [g.spec.name for g in loaded.guards_for("acme")] == ["pii", "banned"]
    assert [g.spec.name for g in loaded.guards_for("other")] == ["pii", "injection"]
    with pytest.raises(InvalidPolicy, match="unknown guard 'nope'"):
        load_policy(BASE + "  bad:\n    disable: [nope]\n")


async def test_store_apply_and_dry_run() -> None:
    store = PolicyStore(load_policy(BASE))
    first = store.version
    loaded, previous = store.apply(BASE.replace("falcon", "eagle"), dry_run=True)
    assert previous == first and store.version == first and loaded.version != first
    store.apply(BASE.replace("falcon", "eagle"))
    assert store.version == loaded.version
    with pytest.raises(InvalidPolicy):
        store.apply("guards: 3")
    assert store.version == loaded.version


async def test_reload_race_every_request_sees_one_whole_policy() -> None:
    """Apply while evaluating concurrently: each result is stamped with a version that was
    active, and its verdicts match that version's guards."""
    redact = load_policy(BASE)
    flag = load_policy(BASE.replace("action: redact", "action: flag"))
    store = PolicyStore(redact)
    expected = {redact.version: Action.REDACT, flag.version: Action.FLAG}

    async def evaluate() -> None:
        for _ in range(40):
            policy = store.active
            result = await store.chain(Stage.INPUT, "default", policy).run(
                InputCheck("mail a@b.io")
            )
            assert result.action is expected[result.policy_version]
            await asyncio.sleep(0)

    async def flip() -> None:
        for i in range(40):
            await store.apply_async(
                BASE if i % 2 else BASE.replace("action: redact", "action: flag")
            )

    await asyncio.gather(evaluate(), evaluate(), flip())


async def test_hot_reload_from_file_keeps_good_policy_on_broken_file(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(BASE)
    store = PolicyStore.from_file(path)
    first = store.version
    store.watch(path, interval_s=0.02)
    try:
        path.write_text("guards:\n  - name: x\n    use: nope\n")
        await asyncio.sleep(0.15)
        assert store.version == first
        path.write_text(BASE.replace("falcon", "eagle"))
        for _ in range(50):
            await asyncio.sleep(0.02)
            if store.version != first:
                break
        assert store.version == load_policy(BASE.replace("falcon", "eagle")).version
    finally:
        await store.stop_watching()


yaml_scalars = st.one_of(st.none(), st.booleans(), st.integers(-5, 100_000), st.text(max_size=12))
yaml_values = st.recursive(
    yaml_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(
            st.sampled_from(
                [
                    "guards",
                    "name",
                    "use",
                    "stage",
                    "action",
                    "mode",
                    "params",
                    "tenants",
                    "stream",
                    "hold_back_chars",
                    "timeout_ms",
                    "on_error",
                    "disable",
                    "add",
                    "replace",
                    "words",
                    "pii",
                ]
            ),
            inner,
            max_size=5,
        ),
    ),
    max_leaves=15,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    doc=st.one_of(yaml_values.map(lambda v: __import__("yaml").safe_dump(v)), st.text(max_size=200))
)
def test_malformed_policies_never_crash_nor_drop_the_active_one(doc: str) -> None:
    store = PolicyStore(load_policy(BASE))
    before = store.version
    try:
        loaded, _ = store.apply(doc)
    except InvalidPolicy as err:
        assert err.reason == "INVALID_POLICY" and err.message
        assert store.version == before
    else:
        assert store.version == loaded.version
