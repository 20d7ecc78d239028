"""`use: json_schema` with a schema written by someone hostile: no stall, no fetch, no surprise
at run time. Each case was measured against python-jsonschema first (guards/detectors/
json_schema.py): a backtracking pattern held the event loop for ~15 s on a 29-character answer,
a dangling `$ref` loaded and then failed every response, and an unknown `$schema` URI was
fetched by the meta-schema check."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import Iterator

import pytest

from guards.detectors.json_schema import JsonSchemaDetector, SchemaRefused
from guards.errors import InvalidPolicy
from guards.hooks import OutputFinalCheck
from guards.policy_loader import load_policy
from guards.policy_store import PolicyStore
from guards.verdict import Action, Stage
from tests.helpers import ticking


def policy(schema: str) -> str:
    return (
        "guards:\n  - name: shape\n    use: json_schema\n    stage: output\n"
        f"    action: block\n    params:\n      schema: {schema}\n"
    )


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    """A loopback port that records whether anything connected to it (the Rust validator's
    HTTP client is invisible to Python audit hooks, so the socket itself is the witness)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    server.setblocking(False)
    yield server
    server.close()


def connected(server: socket.socket) -> bool:
    try:
        conn, _ = server.accept()
    except BlockingIOError:
        return False
    conn.close()
    return True


async def test_a_backtracking_pattern_never_stalls_the_event_loop() -> None:
    store = PolicyStore(
        load_policy(policy('{type: object, properties: {id: {type: string, pattern: "(a+)+$"}}}'))
    )
    chain = store.chain(Stage.OUTPUT)
    async with ticking() as ticks:
        await asyncio.sleep(0.02)
        started = time.perf_counter()
        # 40 characters: hours of backtracking in Python's `re`; 100,000 here.
        for size in (40, 100_000):
            answer = json.dumps({"id": "a" * size + "!"})
            result = await chain.run(OutputFinalCheck(answer))
            assert result.action is Action.BLOCK
            findings = [f.type for o in result.outcomes for f in o.verdict.findings]
            assert findings == ["SCHEMA_VIOLATION"]
        assert time.perf_counter() - started < 5  # liveness, not speed: it was ~15 s at 29
    assert ticks.count >= 1
    ok = await chain.run(OutputFinalCheck(json.dumps({"id": "aaaa"})))
    assert ok.action is Action.ALLOW


def test_a_back_reference_bomb_is_cut_off_and_fails_closed() -> None:
    detector = JsonSchemaDetector({"type": "string", "pattern": "(a+)+\\1$"})
    started = time.perf_counter()
    assert [f.type for f in detector.find(json.dumps("a" * 100_000 + "!"))] == ["SCHEMA_VIOLATION"]
    assert time.perf_counter() - started < 5
    assert JsonSchemaDetector({"type": "string", "pattern": "^(a)\\1$"}).find('"aa"') == []


@pytest.mark.parametrize(
    ("schema", "says"),
    [
        ('{$ref: "#/$defs/missing"}', "/$defs/missing"),
        ('{type: string, pattern: "(unclosed"}', "regex"),
        ("{type: 12}", "unusable JSON schema"),
        ('{$schema: "http://json-schema.org/draft-07/schema#", type: object}', "Draft 2020-12"),
    ],
)
def test_an_unusable_schema_is_refused_at_load_with_its_line(schema: str, says: str) -> None:
    with pytest.raises(InvalidPolicy) as info:
        load_policy(policy(schema), "team.yaml")
    assert info.value.message.startswith("team.yaml:7: invalid policy at guards[0].params")
    assert says in info.value.message


def test_no_schema_makes_the_router_connect_anywhere(listener: socket.socket) -> None:
    url = f"http://127.0.0.1:{listener.getsockname()[1]}/meta.json"
    with pytest.raises(InvalidPolicy, match="Draft 2020-12"):
        load_policy(policy(f'{{$schema: "{url}", type: object}}'))
    # Past the params' own check (a detector built directly): the retriever refuses too.
    for schema in ({"$ref": url}, {"$ref": "file:///etc/passwd"}):
        with pytest.raises(SchemaRefused, match="nothing is fetched"):
            JsonSchemaDetector(schema)
    # A remote $id is only a name: local references under it resolve without a fetch.
    named = JsonSchemaDetector(
        {"$id": url, "$defs": {"n": {"type": "integer"}}, "$ref": "#/$defs/n"}
    )
    assert named.find("3") == [] and named.find('"x"')[0].type == "SCHEMA_VIOLATION"
    time.sleep(0.05)
    assert not connected(listener)


def test_json_deeper_than_the_parser_is_invalid_not_a_crash() -> None:
    detector = JsonSchemaDetector({"type": "array"})
    deep = "[" * 100_000 + "]" * 100_000
    assert [f.type for f in detector.find(deep)] == ["INVALID_JSON"]
    assert detector.find("[[1], [2]]") == []
