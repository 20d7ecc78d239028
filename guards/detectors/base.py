"""Turns a detector (text -> findings) into a Guard with the action its policy entry configures."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from guards.hooks import InputCheck, OutputChunkCheck, OutputFinalCheck
from guards.verdict import Action, Finding, Verdict


class Detector(Protocol):
    """Finds spans in a text; knows nothing of actions or modes."""

    def find(self, text: str, system_prompt: str = "") -> list[Finding]: ...


@dataclass
class DetectorGuard:
    """A Guard whose every hook runs the same detector and applies the configured action."""

    detector: Detector
    action: Action
    cpu_heavy: bool = False
    input_only: bool = False

    def check_input(self, check: InputCheck) -> Verdict:
        return Verdict.decide(
            self.action, check.text, self.detector.find(check.text, check.system_prompt)
        )

    def check_output_chunk(self, check: OutputChunkCheck) -> Verdict:
        return Verdict.decide(
            self.action, check.text, self.detector.find(check.text, check.system_prompt)
        )

    def check_output_final(self, check: OutputFinalCheck) -> Verdict:
        return Verdict.decide(
            self.action, check.text, self.detector.find(check.text, check.system_prompt)
        )
