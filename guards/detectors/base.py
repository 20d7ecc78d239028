"""Turns a detector (text -> findings) into a Guard with the action its policy entry configures."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from guards.hooks import InputCheck, OutputChunkCheck, OutputFinalCheck
from guards.verdict import Action, Finding, Verdict


class Detector(Protocol):
    """Finds spans in a text; knows nothing of actions or modes.

    Optional, for streams: `holdback(text, system_prompt) -> int | None` (see
    guards.detectors.stream_tail), and `judges_whole_text = True` for a detector whose verdict
    on part of a text means nothing (its stream chunks then pass, and the whole text is judged).
    """

    def find(self, text: str, system_prompt: str = "") -> list[Finding]: ...


@dataclass
class DetectorGuard:
    """A Guard whose every hook runs the same detector and applies the configured action."""

    detector: Detector
    action: Action
    cpu_heavy: bool = False
    input_only: bool = False
    # The same text always gets the same verdict (the built-in detectors are pure functions of
    # the text and their configuration), so a chain may remember an allow (guards/chain.py).
    deterministic = True

    def __post_init__(self) -> None:
        self._whole_text_only = bool(getattr(self.detector, "judges_whole_text", False))
        self._holdback: Callable[[str, str], int | None] | None = getattr(
            self.detector, "holdback", None
        )

    def check_input(self, check: InputCheck) -> Verdict:
        return Verdict.decide(
            self.action, check.text, self.detector.find(check.text, check.system_prompt)
        )

    def check_output_chunk(self, check: OutputChunkCheck) -> Verdict:
        if self._whole_text_only:
            return Verdict.allow()
        return Verdict.decide(
            self.action, check.text, self.detector.find(check.text, check.system_prompt)
        )

    def check_output_final(self, check: OutputFinalCheck) -> Verdict:
        return Verdict.decide(
            self.action, check.text, self.detector.find(check.text, check.system_prompt)
        )

    def holdback(self, check: OutputChunkCheck) -> int | None:
        """The detector's answer (None where it has no `holdback`: it cannot say)."""
        hold = self._holdback
        return None if hold is None else hold(check.text, check.system_prompt)
