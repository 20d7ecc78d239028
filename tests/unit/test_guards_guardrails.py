"""guardrails-ai validators through the adapter: verdicts translated, and no network, ever.

STACK.md: guardrails-ai sends telemetry by default (settings.rc.enable_metrics, read from
~/.guardrailsrc) and its import tries an NLTK download. The no-network test runs real
validators in a fresh interpreter whose audit hook records every socket connect and name
lookup from before guardrails is imported until the interpreter has exited (exit handlers
flush telemetry exporters), with an rc file that turns metrics ON: the adapter must win.
Without the adapter's RC.load wrapper the same probe recorded eight DNS lookups of guardrails'
hub endpoint (checked by hand while writing this test). The hook is installed by a
sitecustomize on the probe's PYTHONPATH, so the validator sandbox's worker processes (where
the validators run) are audited the same way, from their start until they have exited.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("guardrails", reason="the `guardrails` extra is not installed")

from guards.hooks import InputCheck
from guards.policy_loader import load_policy
from guards.policy_store import PolicyStore
from guards.verdict import Action, Stage

REPO = Path(__file__).resolve().parents[2]

POLICY = """
guards:
  - name: ticket_format
    use: guardrails_ai.regex_match:RegexMatch
    params: {regex: "(?s)TICKET-[0-9]+: .*", match_type: fullmatch}
    action: block
    timeout_ms: 5000
  - name: secrets_gr
    use: guardrails_ai.secrets_present:SecretsPresent
    action: redact
    timeout_ms: 5000
"""

# Runs at the start of every interpreter with the probe's environment: the probe and each
# sandbox worker it starts. Events are written with os.write on a descriptor opened before the
# hook, so recording never re-enters the hook and survives to the last exit handler; "start"
# and "exit" (the first atexit handler registered, so the last to run) frame each process.
SITECUSTOMIZE = textwrap.dedent(
    """
    import atexit, json, os, sys
    log_fd = os.open(os.environ["MESH_AUDIT_LOG"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    WATCHED = {"socket.connect", "socket.getaddrinfo", "socket.gethostbyname",
               "socket.gethostbyname_ex", "socket.sendto", "socket.sendmsg",
               "http.client.connect", "urllib.Request"}
    def record(*event):
        os.write(log_fd, (json.dumps([*event, os.getpid()]) + "\\n").encode())
    def hook(event, args):
        if event in WATCHED:
            record(event, repr(args)[:200])
    record("start", " ".join(sys.argv)[:300])
    atexit.register(record, "exit", "")
    sys.addaudithook(hook)
    """
)

PROBE = textwrap.dedent(
    """
    import asyncio, json, socket, sys

    from guards.hooks import InputCheck
    from guards.policy_loader import load_policy
    from guards.policy_store import PolicyStore
    from guards.validator_sandbox import worker_pids
    from guards.verdict import Stage

    store = PolicyStore(load_policy(sys.argv[1], "gr.yaml"))
    chain = store.chain(Stage.INPUT)
    key = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
    texts = ["TICKET-12: printer on fire", "no ticket here",
             f"TICKET-9: key\\naws_secret_access_key = '{key}'\\n"]
    actions = [asyncio.run(chain.run(InputCheck(t))).action.value for t in texts]
    workers = worker_pids()
    # guardrails' own Guard API in the same process: it re-reads the rc file and, unless the
    # adapter's switch holds, exports hub telemetry (DNS lookups of an AWS endpoint, seen here).
    from guardrails import Guard
    from guardrails.settings import settings
    from guardrails_ai.regex_match import RegexMatch
    passed = Guard().use(RegexMatch(regex="a.*", on_fail="noop")).validate("abc").validation_passed
    print(json.dumps({"actions": actions, "guard_passed": passed, "workers": workers,
                      "enable_metrics": settings.rc.enable_metrics}))
    if len(sys.argv) > 2:  # control run: a real loopback connection must be recorded
        with socket.create_connection(("127.0.0.1", int(sys.argv[2])), timeout=5):
            pass
    """
)


def run_probe(
    tmp_path: Path, control_port: int | None = None
) -> tuple[dict[str, Any], list[list[Any]]]:
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    # The user's rc file asks for telemetry; the adapter must switch it off regardless.
    (home / ".guardrailsrc").write_text("id=test-user\nenable_metrics=true\n", encoding="utf-8")
    site = tmp_path / "site"
    site.mkdir(exist_ok=True)
    (site / "sitecustomize.py").write_text(SITECUSTOMIZE, encoding="utf-8")
    log = tmp_path / "network.jsonl"
    log.write_text("", encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    env.update(HOME=str(home), PYTHONPATH=f"{site}{os.pathsep}{REPO}", MESH_AUDIT_LOG=str(log))
    env.pop("GUARDRAILS_DISABLE_TRACING", None)
    args = [sys.executable, "-c", PROBE, POLICY]
    if control_port is not None:
        args.append(str(control_port))
    proc = subprocess.run(
        args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240, check=False
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    events = [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines()]
    # Every interpreter the probe started (itself, its sandbox workers) was audited until its
    # exit handlers had run; the validators ran in the workers.
    started = {e[2] for e in events if e[0] == "start"}
    assert result["workers"] and set(result["workers"]) < started
    assert started == {e[2] for e in events if e[0] == "exit"}
    return result, [e for e in events if e[0] not in ("start", "exit")]


def test_guardrails_validators_make_no_network_attempt(tmp_path: Path) -> None:
    result, events = run_probe(tmp_path)
    assert result["actions"] == ["allow", "block", "redact"]
    assert result["guard_passed"] is True
    assert result["enable_metrics"] is False
    assert events == []


def test_the_probe_sees_a_real_connection(tmp_path: Path) -> None:
    """Control: the same probe with one deliberate loopback connection records it, so an empty
    record above means no attempt, not a blind hook."""
    import socket

    with socket.create_server(("127.0.0.1", 0)) as server:
        _, events = run_probe(tmp_path, server.getsockname()[1])
    assert [e[0] for e in events] == ["socket.getaddrinfo", "socket.connect"]
    assert "127.0.0.1" in events[0][1]


async def test_fail_results_translate_to_policy_actions() -> None:
    store = PolicyStore(load_policy(POLICY, "gr.yaml"))
    chain = store.chain(Stage.INPUT)
    ok = await chain.run(InputCheck("TICKET-7: all good"))
    assert ok.action is Action.ALLOW
    bad = await chain.run(InputCheck("free text"))
    assert bad.blocked
    assert [o.guard for o in bad.outcomes if o.verdict.action is Action.BLOCK] == ["ticket_format"]
    secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
    text = f"TICKET-1: creds\naws_secret_access_key = '{secret}'\n"
    redacted = await chain.run(InputCheck(text))
    assert redacted.action is Action.REDACT
    assert secret not in redacted.text
    assert "[SECRETSPRESENT]" in redacted.text
