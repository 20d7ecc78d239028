"""A semantic second opinion for the injection guard: MiniLM vectors, asked only when in doubt.

The n-gram classifier (guards.detectors.injection) reads words; a jailbreak reworded past its
vocabulary scores in its grey zone. This model (logistic regression on the kernel's int8
all-MiniLM-L6-v2 vector, trained by `guards/train_injection_minilm.py` on the n-gram model's own
training rows) reads what a window of the prompt says. A prompt is flagged when the phrase
rules fire, or the n-gram score reaches the policy's threshold (as without this model), or, for
a prompt whose n-gram score is at least the shipped `gate` but under that threshold, when the
MiniLM score of its head or tail window reaches the shipped `threshold`. Gate and threshold were
chosen out of fold on training rows so that no benign training source gains a false positive.

Cost: prompts under the gate (almost every benign one) or already flagged never embed; one in
the band pays one MiniLM run (two for a prompt over WINDOW_CHARS: its head and its tail window,
MiniLM reading 256 word pieces), a few ms each, on the guards' own embedder worker.

`semantic: tuned` (guards/train_injection_tuned.py) reads the same windows with MiniLM's top
layers fine-tuned on those rows (TUNED_ENCODER_PATH in place in the kernel's int8 graph) and
decides more than the grey zone: every prompt whose n-gram score reaches the shipped gate is
judged by a mix of the two scores (`mix` * n-gram + (1 - `mix`) * tuned) against the shipped
threshold, so the encoder can also clear a prompt the n-gram model alone would block (a
developer's prompt quoting instructions). The policy's `threshold` is then the n-gram model's
verdict where the encoder's cannot be had.

If the embedder or the model file is missing or fails, the n-gram verdict stands; where the
second opinion was needed and could not be had, the guard says so with a GUARD_ERROR flag (as
the chain does for a guard that fails under `on_error: open`) and logs a warning.
"""

from __future__ import annotations

import functools
import hashlib
import io
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final

import numpy as np
import numpy.typing as npt

from guards.detectors.base import DetectorGuard
from guards.detectors.injection import InjectionDetector, classifier_score, has_words, rules_match
from guards.hooks import InputCheck, OutputChunkCheck, OutputFinalCheck
from guards.verdict import GUARD_ERROR, Finding, Verdict

if TYPE_CHECKING:
    from mesh.embeddings.batching import Embedder

log = logging.getLogger(__name__)

MODEL_PATH = Path(__file__).resolve().parent.parent / "data" / "injection_minilm.npz"
# sha256 of the shipped file: a changed or truncated model is refused (the guard then falls
# back to the n-gram verdict, flagged), never silently used. `train_injection_minilm` prints it.
MODEL_SHA256: Final = "130e1df249550af2af67b22c1d57de5ef1aa9fffb502a8d04076bf0baff77ca6"
EMBEDDING_PRECISION: Final = "int8"  # the router's default precision: the vectors trained on
# `semantic: tuned`: the head and its gate, mix and threshold, and the fine-tuned layers they
# read (guards/train_injection_tuned.py prints both digests).
TUNED_MODEL_PATH = MODEL_PATH.with_name("injection_tuned.npz")
TUNED_MODEL_SHA256: Final = "46ea0f7390f124a50e80a2a1817961036303fbf3ea0eb13e6d2a67f0bfd199a5"
TUNED_ENCODER_PATH = MODEL_PATH.with_name("injection_encoder.safetensors")
TUNED_ENCODER_SHA256: Final = "ec85d5d909c15fd48d00346cdba843b521cb950706e789f4900c87eff90be19b"
# MiniLM reads 256 word pieces: about 1,000 characters of English.
WINDOW_CHARS = 1000


@dataclass(frozen=True)
class SemanticModel:
    weights: npt.NDArray[np.float32]
    bias: float
    threshold: float  # on the MiniLM score (on the mix, when `mix` is set)
    gate: float  # on the n-gram score: below it, no embedding
    # `tuned`: the n-gram score's share of the mix that decides every prompt past the gate;
    # None: the MiniLM score decides the grey zone only.
    mix: float | None = None


@functools.cache
def load_model(path: Path = MODEL_PATH, sha256: str = MODEL_SHA256) -> SemanticModel:
    """The shipped weights, checked against their pinned sha256 (ValueError if they differ)."""
    raw = path.read_bytes()
    digest = hashlib.sha256(raw).hexdigest()
    if digest != sha256:
        raise ValueError(f"{path.name} has sha256 {digest[:12]}..., expected {sha256[:12]}...")
    with np.load(io.BytesIO(raw)) as data:
        return SemanticModel(
            data["weights"].astype(np.float32),
            float(data["bias"][0]),
            float(data["threshold"][0]),
            float(data["gate"][0]),
            float(data["mix"][0]) if "mix" in data.files else None,
        )


def check_digest(path: Path, sha256: str) -> None:
    """ValueError unless `path` holds exactly the pinned bytes."""
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != sha256:
        raise ValueError(f"{path.name} has sha256 {digest[:12]}..., expected {sha256[:12]}...")


def windows(text: str, size: int = WINDOW_CHARS) -> list[str]:
    """What MiniLM reads: the whole text when it fits in `size` characters, else its head and
    its tail window (each cut at whitespace): a jailbreak sets its persona up front and often
    asks its question at the end."""
    text = text.strip()
    if len(text) <= size:
        return [text] if text else []
    cut = text.rfind(" ", size // 2, size)
    head = text[: cut if cut > 0 else size].strip()
    start = text.find(" ", len(text) - size, len(text) - size // 2)
    tail = text[start if start > 0 else len(text) - size :].strip()
    return [head, tail]


def semantic_score(vectors: npt.NDArray[np.float32], model: SemanticModel) -> float:
    """The highest window score, in [0, 1]."""
    z = float(np.max(vectors @ model.weights)) + model.bias
    return float(1.0 / (1.0 + np.exp(-np.clip(z, -30.0, 30.0))))


class SemanticInjectionDetector(InjectionDetector):
    """InjectionDetector plus the MiniLM opinion in the n-gram model's grey zone (see module).

    `judge` returns the findings and whether the verdict is degraded (the MiniLM opinion was
    needed and could not be had); `find` returns the findings only.
    """

    def __init__(
        self,
        threshold: float = 0.5,
        use_classifier: bool = True,
        use_rules: bool = True,
        model_path: Path = MODEL_PATH,
        model_sha256: str = MODEL_SHA256,
        encoder_path: Path | None = None,
        encoder_sha256: str = "",
    ) -> None:
        super().__init__(threshold, use_classifier, use_rules)
        if not use_classifier:
            raise ValueError("semantic needs the classifier: its gate is the n-gram score")
        self.model: SemanticModel | None = None
        self.embedder: Embedder | None = None
        try:
            model = load_model(model_path, model_sha256)
            if encoder_path is not None:
                check_digest(encoder_path, encoder_sha256)
            self.embedder = _embedder(encoder_path)
            self.model = model
        except Exception as exc:
            # Refused at load, as content_safety is: a policy asking for the opinion must not
            # apply and then flag every request it cannot judge. Failures after a good load
            # (the embedder dying mid-run) keep the n-gram verdict and flag GUARD_ERROR.
            raise ValueError(
                f"semantic: true needs its model and the embedding model: {type(exc).__name__}"
            ) from None

    def judge(self, text: str) -> tuple[list[Finding], bool]:
        if self.use_rules and rules_match(text):
            return [Finding("PROMPT_INJECTION", 0, len(text), 1.0)], False
        if not has_words(text):
            return [], False
        score = classifier_score(text)
        model = self.model
        if model is not None and model.mix is not None:
            return self._mixed(text, score, model)
        if score >= self.threshold:
            return [Finding("PROMPT_INJECTION", 0, len(text), round(score, 4))], False
        if model is None:
            # No model: the gate is unknown, so every prompt the n-gram model allows is unjudged.
            return [], True
        if score < model.gate:
            return [], False
        try:
            semantic = self._semantic(text, model)
        except Exception as exc:  # the embedder failed: the n-gram verdict stands
            log.warning("injection guard: MiniLM opinion failed (%s)", type(exc).__name__)
            return [], True
        if semantic >= model.threshold:
            return [Finding("PROMPT_INJECTION", 0, len(text), round(semantic, 4))], False
        return [], False

    def _mixed(self, text: str, score: float, model: SemanticModel) -> tuple[list[Finding], bool]:
        """`tuned`: past the gate, the mix of both scores decides (see the module docstring)."""
        if score < model.gate:
            return [], False
        try:
            semantic = self._semantic(text, model)
        except Exception as exc:  # the embedder failed: the n-gram verdict stands, degraded
            log.warning("injection guard: tuned opinion failed (%s)", type(exc).__name__)
            if score >= self.threshold:
                return [Finding("PROMPT_INJECTION", 0, len(text), round(score, 4))], False
            return [], True
        mix = model.mix or 0.0
        mixed = mix * score + (1.0 - mix) * semantic
        if mixed >= model.threshold:
            return [Finding("PROMPT_INJECTION", 0, len(text), round(mixed, 4))], False
        return [], False

    def find(self, text: str, system_prompt: str = "") -> list[Finding]:
        return self.judge(text)[0]

    def _semantic(self, text: str, model: SemanticModel) -> float:
        from mesh.embeddings.text import embedding_text

        if self.embedder is None:
            raise RuntimeError("no embedder")
        vectors = self.embedder.embed([embedding_text(w) for w in windows(text)])
        return semantic_score(np.asarray(vectors, dtype=np.float32), model)


_DEGRADED = (Finding(GUARD_ERROR, 0, 0, 1.0),)


@dataclass
class SemanticInjectionGuard(DetectorGuard):
    """The injection guard with the semantic opinion: the configured action on findings; a
    GUARD_ERROR flag (the text passes) where the opinion was needed and missing."""

    detector: SemanticInjectionDetector

    def _verdict(self, text: str) -> Verdict:
        findings, degraded = self.detector.judge(text)
        if not findings and degraded:
            return Verdict.flag(_DEGRADED)
        return Verdict.decide(self.action, text, findings)

    def check_input(self, check: InputCheck) -> Verdict:
        return self._verdict(check.text)

    def check_output_chunk(self, check: OutputChunkCheck) -> Verdict:
        return self._verdict(check.text)

    def check_output_final(self, check: OutputFinalCheck) -> Verdict:
        return self._verdict(check.text)


def _embedder(overlay: Path | None = None) -> Embedder:
    """The guards' MiniLM worker (shared with content safety; `overlay`: the tuned layers in
    place, a worker of its own), loaded and run once now so the first request does not pay the
    load; raises if the model is missing."""
    from mesh.embeddings.batching import shared_embedder

    embedder = shared_embedder(EMBEDDING_PRECISION, pool="guards", overlay=overlay)
    embedder.embed(["warm up the injection guard's semantic model"])
    return embedder
