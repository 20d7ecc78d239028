"""`use: code_scan`: Bandit findings and copyleft headers in code blocks of model output, with
the line each is on; prose is not scanned; streams hold a block until it closes, so no part of
a blocked block leaves at any split position."""

from __future__ import annotations

import pytest
import yaml

from guards.detectors.code_scan import CodeScanDetector, code_blocks, open_block_start
from guards.policy_loader import load_policy
from tests.unit.test_guards_streaming import DEFAULT_YAML, cuts, stream, unary

INSECURE = """Here is the script:

```python
import hashlib, sqlite3, subprocess
password = "hunter2"
def run(cmd, user):
    subprocess.call(cmd, shell=True)
    result = eval(user)
    digest = hashlib.md5(user.encode()).hexdigest()
    cursor = sqlite3.connect("app.db").cursor()
    cursor.execute("SELECT * FROM users WHERE name = '%s'" % user)
    exec(cmd)  # nosec
```
Run it with care.
"""

SAFE = """Use a parameterised query:

```python
import subprocess
def run(args, db, user):
    subprocess.run(["ls", "-l"], check=True)
    db.execute("SELECT * FROM users WHERE name = ?", (user,))
```
"""


def kinds(text: str, detector: CodeScanDetector | None = None) -> list[str]:
    return [f.type for f in (detector or CodeScanDetector()).find(text)]


def test_each_insecure_pattern_is_found_on_its_line() -> None:
    found = CodeScanDetector().find(INSECURE)
    by_type = {f.type: INSECURE[f.start : f.end] for f in found}
    assert by_type == {
        "INSECURE_CODE:B105:hardcoded_password_string:L2": 'password = "hunter2"',
        "INSECURE_CODE:B602:subprocess_popen_with_shell_equals_true:L4": (
            "    subprocess.call(cmd, shell=True)"
        ),
        "INSECURE_CODE:B307:eval:L5": "    result = eval(user)",
        "INSECURE_CODE:B324:hashlib:L6": "    digest = hashlib.md5(user.encode()).hexdigest()",
        "INSECURE_CODE:B608:hardcoded_sql_expressions:L8": (
            "    cursor.execute(\"SELECT * FROM users WHERE name = '%s'\" % user)"
        ),
        # `# nosec` in generated code does not switch the scan off
        "INSECURE_CODE:B102:exec_used:L9": "    exec(cmd)  # nosec",
    }


def test_safe_code_and_prose_pass() -> None:
    assert kinds(SAFE) == []
    prose = "Never call eval() on user input, and avoid subprocess with shell=True (GNU GPL v3)."
    assert kinds(prose) == []


def test_copyleft_headers_in_any_language() -> None:
    text = (
        "```c\n/* This program is free software: you can redistribute it under the terms of\n"
        " * the GNU General Public License as published by the FSF. */\nint main(){}\n```\n"
        "```js\n// SPDX-License-Identifier: AGPL-3.0-only\n```\n"
        "```python\n# SPDX-License-Identifier: MIT\nprint('ok')\n```\n"
    )
    assert kinds(text) == ["LICENSE_HEADER:GPL:L2", "LICENSE_HEADER:AGPL:L1"]
    assert kinds(text, CodeScanDetector(licenses=False)) == []


def test_min_severity_and_skip_narrow_the_findings() -> None:
    high = kinds(INSECURE, CodeScanDetector(min_severity="high"))
    assert high == [
        "INSECURE_CODE:B602:subprocess_popen_with_shell_equals_true:L4",
        "INSECURE_CODE:B324:hashlib:L6",
    ]
    assert "INSECURE_CODE:B307:eval:L5" not in kinds(INSECURE, CodeScanDetector(skip=["B307"]))
    with pytest.raises(ValueError, match="min_severity"):
        CodeScanDetector(min_severity="critical")


def test_unparseable_and_other_languages_give_no_bandit_finding() -> None:
    assert kinds("```python\ndef broken(:\n    eval(x)\n```") == []
    assert kinds("```js\neval(userInput)\n```") == []


def test_one_line_spans_are_code() -> None:
    text = "Try ```import os; os.system(cmd)``` or ```subprocess.call(c, shell=True)``` now"
    assert kinds(text) == [
        "INSECURE_CODE:B605:start_process_with_a_shell:L1",
        "INSECURE_CODE:B602:subprocess_popen_with_shell_equals_true:L1",
    ]


def test_blocks_and_open_blocks() -> None:
    blocks = list(code_blocks("a\n```py\nx = 1\n```\nb ~~~\nopen"))
    assert [(b.language, b.code, b.closed) for b in blocks] == [
        ("py", "x = 1\n", True),
        ("", "open", False),
    ]
    assert open_block_start("prose only") is None
    assert open_block_start("prose ``") == len("prose ")
    assert open_block_start("a\n```py\nx\n```\ndone") is None
    assert open_block_start("a\n```py\nx\n```") == 2  # may still become "````x": held
    assert open_block_start("a\n```py\nx = 1\n") == 2


# What is under test is the stream's hold, not the guard's deadline: Bandit on a loaded CI
# machine once took over the default 200 ms, and `on_error: open` then let the block through.
CODE_POLICY = {
    "name": "code",
    "use": "code_scan",
    "stage": "output",
    "action": "block",
    "on_error": "closed",
    "timeout_ms": 30_000,
}


def policy(**params: object) -> object:
    doc = yaml.safe_load(DEFAULT_YAML)
    doc["guards"].append({**CODE_POLICY, "params": params} if params else CODE_POLICY)
    return load_policy(yaml.safe_dump(doc), "code-scan.yaml")


async def test_stream_never_releases_any_of_a_blocked_block_at_any_split() -> None:
    loaded = policy()
    prefix = INSECURE.index("```python")
    for position in range(1, len(INSECURE)):
        released, blocked, _ = await stream(cuts(INSECURE, [position]), loaded)  # type: ignore[arg-type]
        assert blocked, position
        assert released == INSECURE[: len(released)] and len(released) <= prefix, position
    released, blocked, _ = await stream(list(INSECURE), loaded)  # type: ignore[arg-type]
    assert blocked and len(released) <= prefix


async def test_safe_code_streams_and_matches_the_whole_text() -> None:
    loaded = policy()
    released, blocked, _ = await stream(list(SAFE), loaded)  # type: ignore[arg-type]
    assert not blocked and released == SAFE == await unary(SAFE, loaded)  # type: ignore[arg-type]
