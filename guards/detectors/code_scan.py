"""Code in model output: insecure Python found by Bandit, copyleft licence headers in any language.

Companies serving open-weight models ask that generated code be scanned before it reaches a
user: `shell=True`, eval/exec, weak hashes and ciphers, hard-coded passwords, SQL built by
string formatting (Bandit, PyPI, in-process, offline), and GPL/AGPL headers that would bind
whoever pastes the code. Only code is read, fenced blocks (``` or ~~~) and one-line ```code```
spans: prose that mentions a licence or a function is not code. A finding's type names the rule
and the line inside its block (`INSECURE_CODE:B602:subprocess_popen_with_shell_equals_true:L3`,
`LICENSE_HEADER:AGPL:L1`); its span is that line in the checked text. On streams a block is
held from its opening delimiter until it closes, then scanned whole; prose streams freely.

Bandit runs on the parsed AST only (no file, no subprocess, no import of the scanned code).
`# nosec` comments in generated code are ignored: a model (or a prompt steering it) must not be
able to switch the scan off. Blocks are bounded (`max_block_chars`) so a scan's time is too.
"""

from __future__ import annotations

import functools
import io
import logging
import re
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from guards.verdict import Finding

# A code delimiter: a run of 3+ backticks (a fence, or an inline ```code``` span) or tildes.
DELIMITER = re.compile(r"`{3,}|~{3,}")
PYTHON_TAGS = frozenset({"", "py", "python", "python3", "py3", "ipython", "pycon"})

# Bandit's noisiest checks for short generated snippets, skipped unless a policy names them:
# asserts (B101), importing subprocess/pickle/xml modules (B403-B411: the call sites are what
# matter and have their own checks), `random` (B311: most uses are not crypto), subprocess
# without a shell (B603) or with a partial path (B607), try/except/pass|continue (B110, B112).
DEFAULT_SKIP = (
    "B101", "B110", "B112", "B311", "B403", "B404", "B405", "B406", "B407", "B408", "B409",
    "B410", "B411", "B603", "B607",
)  # fmt: skip
SEVERITIES = ("low", "medium", "high")
_SEVERITY_SCORE = {"LOW": 0.3, "MEDIUM": 0.6, "HIGH": 0.9}

# Licence markers that oblige whoever redistributes the code (copyleft): GPL, LGPL, AGPL headers
# and SPDX identifiers ("GPL-3.0-or-later"), by family. Matched per line, so the finding names
# the line.
LICENSE_MARKERS = (
    (re.compile(r"\bAffero General Public License\b|\bAGPL-?(?:v?\d)", re.IGNORECASE), "AGPL"),
    (re.compile(r"\bLesser General Public License\b|\bLGPL-?(?:v?\d)", re.IGNORECASE), "LGPL"),
    (re.compile(r"\bGNU General Public License\b|\bGPL-?v?[23]\b", re.IGNORECASE), "GPL"),
)


@dataclass(frozen=True)
class CodeBlock:
    """A fenced block: its info string (language), its code and where it starts, where its
    opening fence's line starts and where its closing fence ends (the text's end if open)."""

    language: str
    code: str
    start: int
    fence_start: int
    end: int
    closed: bool


def code_blocks(text: str) -> Iterator[CodeBlock]:
    """Code in order: fenced blocks (the info string after the opening fence names the
    language) and one-line ```code``` spans; an unclosed last block runs to the text's end."""
    pos = 0
    while True:
        opening = DELIMITER.search(text, pos)
        if opening is None:
            return
        fence = opening.group()
        closing = re.compile(rf"{re.escape(fence[0])}{{{len(fence)},}}")
        newline = text.find("\n", opening.end())
        line_end = len(text) if newline < 0 else newline
        same_line = closing.search(text, opening.end(), line_end)
        if same_line is not None and text[opening.end() : same_line.start()].strip():
            code = text[opening.end() : same_line.start()]
            yield CodeBlock("", code, opening.end(), opening.start(), same_line.end(), True)
            pos = same_line.end()
            continue
        info = text[opening.end() : line_end].strip()
        language = info.split(" ")[0].lower() if info else ""
        body = line_end + 1 if newline >= 0 else len(text)
        end = closing.search(text, body)
        if end is None:
            yield CodeBlock(language, text[body:], body, opening.start(), len(text), False)
            return
        yield CodeBlock(language, text[body : end.start()], body, opening.start(), end.end(), True)
        pos = end.end()


def open_block_start(text: str) -> int | None:
    """Where a block still open at the end of `text` begins (None: none open).

    A block that closes at the very end is still open (the closing run may go on, or the
    line may turn out not to close it), and so are 1-2 trailing backticks or tildes (they may
    become a delimiter)."""
    for block in code_blocks(text):
        if not block.closed or block.end == len(text):
            return block.fence_start
    tail = len(text) - len(text.rstrip("`~"))
    return len(text) - tail if tail else None


@functools.cache
def _bandit() -> tuple[Any, Any, dict[str, str]]:
    """Bandit's meta-AST, test set and blacklist names (its B3xx/B4xx findings all report the
    test name "blacklist"; "eval" or "md5" says more), built once per process (~0.1 s)."""
    logging.getLogger("bandit").setLevel(logging.ERROR)  # a warning per snippet otherwise
    # Loading Bandit's plugins also loads its report formatters; one needs a package Bandit
    # does not require (sarif_om) and stevedore logs that at ERROR. No formatter is used here.
    stevedore = logging.getLogger("stevedore.extension")
    level = stevedore.level
    stevedore.setLevel(logging.CRITICAL)
    try:
        from bandit.blacklists import calls, imports
        from bandit.core import config, meta_ast, test_set

        tests = test_set.BanditTestSet(config.BanditConfig(), profile={})
    finally:
        stevedore.setLevel(level)

    names = {
        entry["id"]: entry["name"]
        for table in (calls.gen_blacklist(), imports.gen_blacklist())
        for entries in table.values()
        for entry in entries
    }
    return meta_ast.BanditMetaAst(), tests, names


class CodeScanDetector:
    """Bandit on fenced Python blocks, licence markers on every fenced block."""

    def __init__(
        self,
        min_severity: str = "low",
        skip: Iterable[str] = DEFAULT_SKIP,
        licenses: bool = True,
        bandit: bool = True,
        max_block_chars: int = 20_000,
    ) -> None:
        if min_severity not in SEVERITIES:
            raise ValueError(f"min_severity must be one of {SEVERITIES}")
        self.min_rank = SEVERITIES.index(min_severity)
        self.skip = frozenset(skip)
        self.licenses = licenses
        self.bandit = bandit
        self.max_block_chars = max_block_chars
        if bandit:
            _bandit()
        # Bandit's visitor keeps per-file state in objects shared through the test set: one
        # scan at a time (a GIL-bound scan loses nothing by it).
        self._lock = threading.Lock()

    def find(self, text: str, system_prompt: str = "") -> list[Finding]:
        if "```" not in text and "~~~" not in text:
            return []
        found: list[Finding] = []
        for block in code_blocks(text):
            if not block.closed:
                continue  # still being written (a stream holds it) or cut off: no AST
            code = block.code[: self.max_block_chars]
            if self.licenses:
                found += self._license_findings(code, block.start)
            if self.bandit and block.language in PYTHON_TAGS:
                found += self._bandit_findings(code, block.start)
        return sorted(found, key=lambda f: (f.start, f.type))

    def _license_findings(self, code: str, offset: int) -> list[Finding]:
        out = []
        for number, (start, line) in enumerate(_lines(code), 1):
            for pattern, name in LICENSE_MARKERS:
                if pattern.search(line) is not None:
                    out.append(
                        Finding(f"LICENSE_HEADER:{name}:L{number}", offset + start,
                                offset + start + len(line), 1.0)
                    )  # fmt: skip
                    break
        return out

    def _bandit_findings(self, code: str, offset: int) -> list[Finding]:
        from bandit.core import metrics, node_visitor

        meta, tests, names = _bandit()
        with self._lock:
            visitor = node_visitor.BanditNodeVisitor(
                "generated.py", io.BytesIO(code.encode()), meta, tests, False, {},
                metrics.Metrics(),
            )  # fmt: skip
            try:
                visitor.process(code)
            except (SyntaxError, ValueError, RecursionError, MemoryError):
                return []  # not Python (or not parseable): nothing Bandit can say
            issues = list(visitor.tester.results)
        lines = _lines(code)
        out = []
        for issue in issues:
            if issue.test_id in self.skip:
                continue
            if SEVERITIES.index(issue.severity.lower()) < self.min_rank:
                continue
            number = max(1, min(int(issue.lineno), len(lines)))
            start, line = lines[number - 1] if lines else (0, "")
            out.append(
                Finding(
                    f"INSECURE_CODE:{issue.test_id}:{names.get(issue.test_id, issue.test)}"
                    f":L{number}",
                    offset + start,
                    offset + start + len(line),
                    _SEVERITY_SCORE.get(issue.severity, 0.5),
                )
            )
        return out

    def holdback(self, text: str, system_prompt: str = "") -> int:
        """From the fence of a block still open (it is scanned whole once it closes); prose
        outside code blocks streams freely."""
        start = open_block_start(text)
        return 0 if start is None else len(text) - start


def _lines(code: str) -> list[tuple[int, str]]:
    """(offset, line) for each line of `code`, as Python's parser numbers them."""
    out = []
    pos = 0
    for line in code.split("\n"):
        out.append((pos, line))
        pos += len(line) + 1
    return out
