"""`use: presidio`: real Presidio on the pinned spaCy model, offline, and a precise
INVALID_POLICY when the optional `presidio` extra is missing."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from guards.detectors import presidio
from guards.errors import InvalidPolicy
from guards.hooks import InputCheck
from guards.policy_loader import load_policy
from guards.policy_store import PolicyStore
from guards.verdict import Action, Stage

REPO = Path(__file__).resolve().parents[2]
POLICY = """\
guards:
  - name: people
    use: presidio
    action: redact
    timeout_ms: 10000
    params:
      entities: [PERSON, LOCATION, EMAIL_ADDRESS]
"""
installed = pytest.mark.skipif(
    importlib.util.find_spec("presidio_analyzer") is None
    or importlib.util.find_spec(presidio.MODEL_PACKAGE) is None,
    reason="the optional `presidio` extra is not installed (make install installs it)",
)


@installed
async def test_presidio_redacts_names_and_places() -> None:
    chain = PolicyStore(load_policy(POLICY, "people.yaml")).chain(Stage.INPUT)
    text = "My name is John Smith, I live in Berlin; mail john.smith@example.com"
    result = await chain.run(InputCheck(text))
    assert result.action is Action.REDACT
    assert result.text == "My name is [PERSON], I live in [LOCATION]; mail [EMAIL_ADDRESS]"
    assert chain.guards[0].guard.cpu_heavy  # ~40 ms: runs in a thread, never on the loop
    benign = await chain.run(InputCheck("Please summarise the quarterly report."))
    assert benign.action is Action.ALLOW


@installed
def test_unknown_presidio_entity_is_an_invalid_policy() -> None:
    bad = POLICY.replace("EMAIL_ADDRESS", "FAVOURITE_COLOUR")
    with pytest.raises(InvalidPolicy) as info:
        load_policy(bad, "people.yaml")
    assert "people.yaml:7: invalid policy at guards[0].params" in info.value.message
    assert "FAVOURITE_COLOUR" in info.value.message


def test_missing_extra_is_a_precise_invalid_policy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "presidio_analyzer", None)  # import now raises ImportError
    presidio.offline_analyzer.cache_clear()
    try:
        with pytest.raises(InvalidPolicy) as info:
            load_policy(POLICY, "people.yaml")
    finally:
        presidio.offline_analyzer.cache_clear()
    err = info.value
    assert err.code.name == "INVALID_ARGUMENT" and err.reason == "INVALID_POLICY"
    assert err.message.startswith("people.yaml:3: invalid policy at guards[0].use: ")
    assert "optional `presidio` extra" in err.message
    assert "presidio_analyzer is not installed" in err.message
    assert "inference-mesh[presidio]" in err.message
    assert err.metadata == {"source": "people.yaml", "line": "3", "field": "guards[0].use"}


@installed
def test_a_changed_model_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(presidio.PINNED_MODEL_FILES, "ner/model", "0" * 64)
    with pytest.raises(presidio.PresidioModelMismatch, match="refusing to load a changed model"):
        presidio._model_dir()


PROBE = textwrap.dedent(
    """
    import asyncio, json, os, sys
    log_fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    WATCHED = {"socket.connect", "socket.getaddrinfo", "socket.gethostbyname",
               "http.client.connect", "urllib.Request"}
    def hook(event, args):
        if event in WATCHED:
            os.write(log_fd, (json.dumps([event, repr(args)[:200]]) + "\\n").encode())
    sys.addaudithook(hook)
    from guards.hooks import InputCheck
    from guards.policy_loader import load_policy
    from guards.policy_store import PolicyStore
    from guards.verdict import Stage
    chain = PolicyStore(load_policy(sys.argv[2], "people.yaml")).chain(Stage.INPUT)
    # An email makes Presidio's email recognizer consult tldextract (online by default).
    result = asyncio.run(chain.run(InputCheck("Ask Maria Garcia in Madrid: maria@example.co.uk")))
    print(json.dumps({"text": result.text}))
    """
)


@installed
def test_presidio_makes_no_network_attempt(tmp_path: Path) -> None:
    log = tmp_path / "network.jsonl"
    log.write_text("", encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    env.update(HOME=str(tmp_path), XDG_CACHE_HOME=str(tmp_path / "cache"), PYTHONPATH=str(REPO))
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, str(log), POLICY],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = json.loads(proc.stdout.strip().splitlines()[-1])["text"]
    assert text == "Ask [PERSON] in [LOCATION]: [EMAIL_ADDRESS]"
    assert log.read_text(encoding="utf-8") == ""
    assert not (tmp_path / "cache" / "python-tldextract").exists()  # no suffix-list cache either
