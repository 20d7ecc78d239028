"""Guards for streamed output: text leaves as soon as no guard can still turn it into a finding.

Each chunk runs the output chain on the text not yet released (the window), then asks every
guard that enforces a block or a redaction how many trailing characters of the window it could
still turn into a finding once more text arrives (`guards.hooks.StreamHoldback`; the built-in
detectors answer in guards/detectors). The most any of them asks for is held, and so is a
redaction that reaches into that tail or to the window's end (it may still grow); the rest
leaves, masked. A guard that cannot say (a guardrails-ai validator, Presidio, the injection
classifier) holds the policy's `hold_back_chars`. Monitor-mode and flag guards change nothing
a client receives, so they hold nothing: the whole-text check at the end records what they find.

Why a window is enough: a cut is only made where no finding can straddle it (that is what each
guard's holdback promises), so every finding lies wholly in the window that completes it. The
window is checked with the released text since its last whitespace in front (`_context`), so
lookbehinds and word boundaries at its start read as in the whole text: streamed output is then
masked exactly as the whole text would be (checked on generated chunkings). Only where more
than 64 characters without whitespace precede a cut can a match start early and mask more.

What reaches the client, with the built-in detectors (tests/unit/test_guards_streaming.py
checks each at every split position of a stream):
- secrets and PII: no part of a value, whatever its length; a value is seen whole before any
  of it leaves, then masked.
- system-prompt leakage: no character of a run of `ngram_words` words (the detector's n-gram)
  shared with the system prompt, however long its words: the trailing words the prompt also
  holds are kept until the run breaks (then they are fewer than n words: no finding) or
  completes (then the chunk blocks). Shorter shared runs are not findings and stream freely.
- `finish` runs the whole-text check before releasing what is held: a block there releases
  nothing more.
Findings in `outcomes` carry spans in the raw output (before masking).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from guards.chain import GuardChain
from guards.detectors.credential_codes import code_block_start
from guards.detectors.credential_columns import header_above
from guards.detectors.credential_contexts import context_reach
from guards.detectors.credential_labels import LABEL_REACH, may_need_label
from guards.detectors.phone import CUE_LOOKBEHIND_CHARS
from guards.detectors.pii import may_need_cue
from guards.detectors.seed_phrase import phrase_reach
from guards.detectors.table_column import MAX_CHARS_ABOVE, table_top
from guards.hooks import OutputChunkCheck, OutputFinalCheck
from guards.verdict import (
    Action,
    ChainResult,
    Finding,
    GuardOutcome,
    Mode,
    Verdict,
    mask_spans,
    merge_spans,
)
from mesh.config import DEFAULT_TENANT

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StreamStep:
    """What the caller may send now, and whether the stream must end as guard-blocked."""

    text: str
    blocked: bool = False


@dataclass
class _Aggregate:
    outcome: GuardOutcome
    findings: dict[tuple[str, int, int], Finding] = field(default_factory=dict)


_SEVERITY = {a: i for i, a in enumerate(Action)}
_CHANGES_TEXT = (Action.BLOCK, Action.REDACT)
_CONTEXT_MAX = 64
_REREAD_MAX = 600  # the reach of a credential form's evidence (secrets.py's open forms)
# Released text a detector may read before a finding (a phone number's cue word, "Phone:"):
# the window is checked with at least this much in front.
_LOOKBEHIND = CUE_LOOKBEHIND_CHARS
# A table's lines above the window (its header names a column's values: table_column.py).
_TAIL_KEPT = MAX_CHARS_ABOVE + 1024

Holdback = Callable[[OutputChunkCheck], int | None]


class StreamGuard:
    """Feed chunks with `push`, end with `finish`; `outcomes` sums up each guard's stream.

    `hold_back` is what a guard that cannot say how much it needs holds.
    """

    def __init__(
        self,
        chain: GuardChain,
        hold_back: int,
        *,
        tenant: str = DEFAULT_TENANT,
        request_id: str = "",
        system_prompt: str = "",
    ) -> None:
        self.chain = chain
        self.hold_back = hold_back
        self.tenant = tenant
        self.request_id = request_id
        self.system_prompt = system_prompt
        self._window = ""  # raw text not yet released
        self._consumed = 0  # raw characters already released
        self._raw_released: list[str] = []
        self._released_tail = ""  # the last raw characters released, for `_context`
        # Set when held text holds a redaction (another guard's hold kept it back): the next
        # check then reads the window's line and the one above, where the evidence of a
        # credential form lies (a `curl` on the line above its `-u user:password`).
        self._reread_lines = False
        self._released: list[str] = []  # what the client got (masked)
        self._aggregates: dict[str, _Aggregate] = {}
        self.blocked = False
        # Only guards whose verdict changes what the client gets need text held for them.
        self._holders: list[tuple[str, Holdback | None]] = [
            (built.spec.name, getattr(built.guard, "holdback", None))
            for built in chain.guards
            if built.spec.mode_enum is Mode.ENFORCE and built.spec.action_enum in _CHANGES_TEXT
        ]

    async def push(self, chunk: str) -> StreamStep:
        if self.blocked:
            return StreamStep("", True)
        if not chunk:
            return StreamStep("")
        self._window += chunk
        context = self._context()
        check = OutputChunkCheck(
            context + self._window,
            self.tenant,
            self.request_id,
            self.system_prompt,
            self._consumed - len(context),
        )
        result = await self.chain.run(check)
        if result.blocked:
            return self._block(result, check.offset)
        size = len(self._window)
        cut = size - min(self._holdback(check), size)
        spans = _shifted(result.redactions, len(context)) if result.redactions else []
        for span in reversed(spans):
            if span.start < cut and (span.end > cut or span.end == size):
                cut = span.start
        self._reread_lines = any(span.start >= cut for span in spans)
        self._record(result, check.offset, settled=cut + len(context))
        return self._release(cut, [s for s in spans if s.end <= cut])

    async def finish(self) -> StreamStep:
        """Judge the whole output, then release what is held (nothing, if that check blocks)."""
        if self.blocked:
            return StreamStep("", True)
        whole = "".join(self._raw_released) + self._window
        result = await self.chain.run(
            OutputFinalCheck(whole, self.tenant, self.request_id, self.system_prompt)
        )
        if result.blocked:
            return self._block(result, 0)
        self._record(result, 0, settled=len(whole))
        return self._release(len(self._window), _shifted(result.redactions, self._consumed))

    def _holdback(self, check: OutputChunkCheck) -> int:
        hold = 0
        for name, holdback in self._holders:
            wanted = None
            if holdback is not None:
                try:
                    wanted = holdback(check)
                except Exception as exc:  # a guard's own code: hold its window, keep streaming
                    log.warning(
                        "guard %s holdback failed (%s); holding %d characters",
                        name,
                        type(exc).__name__,
                        self.hold_back,
                    )
            if wanted is None:
                wanted = self.hold_back
            if wanted > hold:
                hold = wanted
        return hold

    def _context(self) -> str:
        """Released text read again before the window, from a whitespace (no finding starts
        with one): lookbehinds, word boundaries and finditer's restarts then see the window as
        they see it in the whole text. When the window holds a digit, at least the last
        `_LOOKBEHIND` characters (a cue word before a number: "Phone: 451 5986"); otherwise
        from the last whitespace only, so a chunk of plain words is not judged twice over.
        Capped: text without spaces gets 64 characters more, and a match that starts before
        them can only be masked more. After a check that found a redaction in held text, the
        window's line and the one above are read again (up to 600 characters). A window with a
        digit in a table's row is read with the table's lines above it, back to its header,
        and so is any window in a row under a credential column's header. A window holding a
        run as long as a key is read with its line and the lines above it within LABEL_REACH,
        where a label naming the key may stand (credential_labels.py), a window in a list
        of backup codes with the lines back to the list's heading (credential_codes.py), and a
        window whose line holds a `key`, a hex run or " one" with the lines where its evidence
        may stand (credential_contexts.py)."""
        tail = self._released_tail
        cue = may_need_cue(self._window)
        i = max(len(tail) - _LOOKBEHIND, 0) if cue else len(tail)
        floor = max(i - _CONTEXT_MAX, 0)
        while i > floor and not tail[i - 1].isspace():
            i -= 1
        start = i - 1 if i > floor else floor
        if self._reread_lines:
            line = tail.rfind("\n")
            above = tail.rfind("\n", 0, max(line, 0)) + 1 if line > 0 else 0
            start = min(start, max(above, len(tail) - _REREAD_MAX))
        codes = code_block_start(tail[: tail.rfind("\n") + 1])  # a list of backup codes
        if codes is not None:
            start = min(start, codes)
        # a block's name, a PSK's cue (credential_contexts): the window's line decides, as the
        # form's value may be all that is held of it
        # ... and a recovery phrase's first words (seed_phrase)
        reach = max(
            context_reach(tail[tail.rfind("\n") + 1 :] + self._window),
            phrase_reach(tail, self._window),
        )
        if reach:
            floor = max(len(tail) - reach, 0)
            start = min(start, tail.rfind("\n", 0, floor) + 1 if floor else 0)
        if may_need_label(self._window):
            # a key's label: on its line, or on the lines above within LABEL_REACH
            line = tail.rfind("\n") + 1
            floor = max(line - LABEL_REACH, 0)
            start = min(start, tail.rfind("\n", 0, floor) + 1 if floor else 0)
        if "\n" in tail:
            line = tail.rfind("\n") + 1
            if cue:
                table = table_top(tail, line)
                if table is not None and table[0] < start:
                    return tail[table[0] :]
            header = header_above(tail, line)  # a credential column's header
            if header is not None and header.start < start:
                # a Confluence header stands right above the table's top
                return tail[header.start :]
        return tail[start:]

    def _release(self, cut: int, spans: list[Finding]) -> StreamStep:
        raw = self._window[:cut]
        if not raw:
            return StreamStep("")
        text = mask_spans(raw, spans) if spans else raw
        self._window = self._window[cut:]
        self._consumed += cut
        self._raw_released.append(raw)
        self._released_tail = (self._released_tail + raw)[-_TAIL_KEPT:]
        self._released.append(text)
        return StreamStep(text)

    def _block(self, result: ChainResult, offset: int) -> StreamStep:
        self._record(result, offset, settled=None)
        self.blocked = True
        self._window = ""
        return StreamStep("", True)

    def _record(self, result: ChainResult, offset: int, *, settled: int | None) -> None:
        """Each guard's most severe action; findings once settled (ending before `settled`,
        the cut: held text is checked again with the next chunk), all of them on a block."""
        for outcome in result.outcomes:
            agg = self._aggregates.get(outcome.guard)
            if agg is None:
                agg = self._aggregates[outcome.guard] = _Aggregate(outcome)
            elif outcome.verdict.action is Action.ALLOW:
                continue  # the common case: nothing to add
            elif _SEVERITY[outcome.verdict.action] > _SEVERITY[agg.outcome.verdict.action]:
                agg.outcome = outcome
            for f in outcome.verdict.findings:
                if settled is None or f.end <= settled:
                    shifted = Finding(f.type, f.start + offset, f.end + offset, f.score)
                    agg.findings[(f.type, shifted.start, shifted.end)] = shifted

    @property
    def released_text(self) -> str:
        return "".join(self._released)

    @property
    def outcomes(self) -> list[GuardOutcome]:
        """One outcome per guard: its most severe action over the stream, all its findings."""
        out = []
        for agg in self._aggregates.values():
            o = agg.outcome
            verdict = Verdict(
                o.verdict.action,
                tuple(agg.findings.values()) if o.verdict.action is not Action.ALLOW else (),
            )
            out.append(
                GuardOutcome(o.guard, o.stage, o.mode, verdict, o.error, error_type=o.error_type)
            )
        return out


def _shifted(findings: Sequence[Finding], by: int) -> list[Finding]:
    """Redactions moved `by` characters left, merged, clipped to what is past that point."""
    return [
        Finding(f.type, max(f.start - by, 0), f.end - by, f.score)
        for f in merge_spans(findings)
        if f.end > by
    ]
