"""Estimate the model tier a request needs: a classifier learned from public labelled data.

The model (mesh/router/estimator_model.py, trained by mesh/router/train_estimator.py on the rows
tools/estimator_data.py builds; data card: mesh/router/data/tier_model.md) reads the task's
MiniLM embedding (asked only where the static model below is unsure) and a dozen structural
features (length, code lines, numbers, script, where the ask sits), and
gives probabilities for small, medium and frontier. No regex names a task type: a prompt's tier
comes from what labelled tasks of each tier look like, so it holds on wording it never saw.

The tier chosen is the smallest whose chance of being too small stays under a risk bound
(sending a frontier task to a small model costs a wrong answer, the other way only money):
frontier when P(frontier) is over the frontier bound, else medium when P(medium or frontier) is
over the small/medium bound, else small. Both bounds are chosen with the model on its
validation split (`risk_frontier`, `risk` in its meta); a configured `underroute_risk` sets
both, and a model without `risk_frontier` uses `risk` for both steps. The
policy then takes the cheapest card at that tier or above, so a catalogue without a medium model
sends medium work up. The reason line reports the evidence that decided: the probabilities,
how much the wording and each structural cue pushed, and the training tasks nearest in meaning.

With `embeddings: false` a structure-only model (same training rows, no MiniLM) is used.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mesh.config import EstimatorSettings, tier_name
from mesh.embeddings.batching import Embedder, Vector, aembed, shared_embedder
from mesh.router.estimator_model import (
    FEATURE_CHARS,
    STRUCT_NAMES,
    STRUCT_WORDS,
    TierModel,
    model_text,
    structural,
)
from mesh.router.tier_estimate import ESTIMATED_TIERS, TIER_VALUES, TIERS, TierEstimate
from mesh.v1 import types_pb2

__all__ = ["ESTIMATED_TIERS", "FEATURE_CHARS", "TierEstimate", "TierEstimator", "load_model"]

DATA = Path(__file__).with_name("data")
DEFAULT_MODEL = DATA / "tier_model.npz"
DEFAULT_STRUCT_MODEL = DATA / "tier_model_struct.npz"
DEFAULT_FAST_MODEL = DATA / "tier_model_static.npz"
# The static table's recipe (static_table.TABLE_VERSION) and pooling the static model reads.
STATIC_EMBEDDING = "minilm-static-v1-mean+max"

_MIN_CUE = 0.4  # a structural feature is named only when it moved the log-odds this much

_models: dict[Path, TierModel] = {}
_models_lock = threading.Lock()


def load_model(path: Path) -> TierModel:
    """A model file, loaded and integrity-checked once per process."""
    with _models_lock:
        model = _models.get(path)
        if model is None:
            model = _models[path] = TierModel.load(path)
        return model


def _task(messages: Sequence[types_pb2.ChatMessage]) -> str:
    """The last user turn: what the request asks for."""
    return next(
        (m.content for m in reversed(messages) if m.role == types_pb2.ROLE_USER),
        messages[-1].content if messages else "",
    )


@dataclass(frozen=True)
class _Stage:
    """One model with the bounds it decides by."""

    model: TierModel
    risk: float
    risk_frontier: float
    label: str  # how the reason names its embedding


class TierEstimator:
    """The learned tier model; thread-safe, the embedders load on first use.

    With a `fast_embedder` (static vectors, mesh/embeddings/static.py) a static model decides
    first; its estimate stands only where both of its probabilities sit at least the model's
    `cascade_margin` (log-odds) from their bounds, else MiniLM's model decides. The margin is
    chosen on the validation split so that the two together mis-route no more than MiniLM's
    model alone (mesh/router/train_cascade.py); most prompts then never run MiniLM.
    """

    def __init__(
        self,
        settings: EstimatorSettings | None = None,
        embedder: Embedder | None = None,
        model: TierModel | None = None,
        fast_embedder: Embedder | None = None,
        fast_model: TierModel | None = None,
    ) -> None:
        self.settings = settings or EstimatorSettings()
        self._embedder: Embedder | None = None
        if self.settings.embeddings:
            self._embedder = embedder or shared_embedder()
            default = self.settings.model_path or DEFAULT_MODEL
        else:
            default = self.settings.struct_model_path or DEFAULT_STRUCT_MODEL
        self.model = model or load_model(default)
        if self._embedder is not None and self.model.dim != self._embedder.dim:
            raise ValueError(
                f"tier model expects {self.model.dim}-d embeddings, embedder gives "
                f"{self._embedder.dim}"
            )
        if self._embedder is None and self.model.dim:
            raise ValueError("this tier model needs embeddings; set estimator.embeddings: true")
        self._full = self._stage(self.model, "MiniLM")
        self._fast: _Stage | None = None
        self._fast_embedder: Embedder | None = None
        self.cascade_margin = 0.0
        if fast_embedder is not None and self._embedder is not None:
            fast = fast_model or load_model(self.settings.static_model_path or DEFAULT_FAST_MODEL)
            margin = fast.meta.get("cascade_margin")
            if fast.meta.get("embedding") != STATIC_EMBEDDING or margin is None:
                raise ValueError(
                    f"the static tier model must be trained on {STATIC_EMBEDDING} vectors and "
                    "carry a cascade_margin (python -m mesh.router.train_cascade)"
                )
            if fast.dim != fast_embedder.dim:
                raise ValueError(f"static tier model expects {fast.dim}-d vectors")
            self._fast = self._stage(fast, "static")
            self._fast_embedder = fast_embedder
            self.cascade_margin = float(str(margin))
        # The bounds in effect (the full model's; a configured risk sets every model's).
        self.risk = self._full.risk
        self.risk_frontier = self._full.risk_frontier

    def _stage(self, model: TierModel, label: str) -> _Stage:
        risk = self.settings.underroute_risk
        bound = float(risk if risk is not None else str(model.meta.get("risk", 0.3)))
        # The frontier step's own bound, chosen with the model; a configured risk sets both.
        frontier = model.meta.get("risk_frontier") if risk is None else None
        return _Stage(model, bound, float(str(frontier)) if frontier is not None else bound, label)

    @property
    def uses_embeddings(self) -> bool:
        return self._embedder is not None

    @property
    def static_first(self) -> bool:
        return self._fast is not None

    def warm_up(self) -> None:
        """Load the embedding models now instead of on the first request."""
        if self._fast_embedder is not None:
            self._fast_embedder.embed(["warm up"])
        if self._embedder is not None:
            self._embedder.embed(["warm up"])

    def estimate(
        self, messages: Sequence[types_pb2.ChatMessage], min_tier: int = 0
    ) -> TierEstimate:
        """The tier `messages` need (never below `min_tier`), with confidence and reason.

        Blocking (embeds on this thread); the router's request path uses `aestimate`.
        """
        task = _task(messages)
        struct = structural(task, len(messages))
        fast = self._try_fast(task, struct, min_tier)
        if fast is not None:
            return fast
        query = None
        if self._embedder is not None:
            query = self._embedder.embed([model_text(task)])[0]
        return self._estimate(self._full, struct, min_tier, query)

    async def aestimate(
        self, messages: Sequence[types_pb2.ChatMessage], min_tier: int = 0
    ) -> TierEstimate:
        """`estimate` with MiniLM off the event loop, batched with concurrent requests (the
        static step runs inline: a table lookup costs less than the hop)."""
        task = _task(messages)
        struct = structural(task, len(messages))
        fast = self._try_fast(task, struct, min_tier)
        if fast is not None:
            return fast
        query = None
        if self._embedder is not None:
            query = (await aembed(self._embedder, [model_text(task)]))[0]
        return self._estimate(self._full, struct, min_tier, query)

    def _try_fast(self, task: str, struct: np.ndarray, min_tier: int) -> TierEstimate | None:
        """The static model's estimate where it is clear of both bounds, else None."""
        if self._fast is None or self._fast_embedder is None:
            return None
        vector = self._fast_embedder.embed([model_text(task)])[0]
        x = self._fast.model.inputs(vector, struct)
        p = self._fast.model.probabilities(x)
        if _margin(p, self._fast) < self.cascade_margin:
            return None
        return self._estimate(self._fast, struct, min_tier, vector, (x, p))

    def _estimate(
        self,
        stage: _Stage,
        struct: np.ndarray,
        min_tier: int,
        query: Vector | None,
        computed: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> TierEstimate:
        embedding = query if query is not None else np.zeros(0, dtype=np.float32)
        if computed is None:
            x = stage.model.inputs(embedding, struct)
            p = stage.model.probabilities(x)
        else:
            x, p = computed  # the static step's inputs and probabilities
        above = np.cumsum(p[::-1])[::-1]  # above[i] = P(needs class i or higher)
        index = 0
        if above[2] > stage.risk_frontier:
            index = 2
        elif above[1] > stage.risk:
            index = 1
        estimated = TIER_VALUES[TIERS[index]]
        tier = max(estimated, int(min_tier))
        probs = (float(p[0]), float(p[1]), 0.0, float(p[2]))
        confidence = float(p[index]) if index == len(TIERS) - 1 else 1.0 - float(above[index + 1])
        reason = _reason(stage, p, index, x, embedding)
        if stage is self._fast:
            reason = f"{reason}; static model, clear of both bounds"
        elif self._fast is not None and stage.model.dim:
            reason = f"{reason}; MiniLM model (the static estimate was near a bound)"
        if tier != estimated:
            reason = f"{reason}; raised to min_tier {tier_name(tier)}"
        decided_by = stage.label if stage.model.dim else "structure"
        return TierEstimate(tier, round(confidence, 3), reason, probs, decided_by)


def _margin(p: np.ndarray, stage: _Stage) -> float:
    """How far (log-odds) the estimate sits from the nearer of its two bounds."""
    above = np.clip(np.cumsum(p[::-1])[::-1], 1e-6, 1 - 1e-6)
    return float(
        min(
            abs(_logit(float(above[2])) - _logit(stage.risk_frontier)),
            abs(_logit(float(above[1])) - _logit(stage.risk)),
        )
    )


def _logit(q: float) -> float:
    q = min(max(q, 1e-6), 1 - 1e-6)
    return math.log(q / (1 - q))


def _reason(stage: _Stage, p: np.ndarray, index: int, x: np.ndarray, embedding: np.ndarray) -> str:
    """The evidence: probabilities vs the risk bound, the pushes that decided, neighbours.

    The decisive comparison is between the chosen class and the one next to it: for a small
    estimate, small vs medium (what kept it down); otherwise the chosen class vs the one
    below (what lifted it). Each push is the log-odds a part of the input added to that
    comparison, so "wording +2.1" means the embedding alone moved it by e^2.1.
    """
    model = stage.model
    upper, lower = (1, 0) if index == 0 else (index, index - 1)
    sign = -1.0 if index == 0 else 1.0  # report pushes in the direction of the decision
    pushes: list[tuple[float, str]] = []
    wording, contrib = model.pushes(x, upper, lower)  # one gradient per request
    if model.dim:
        pushes.append((sign * wording, f"wording ({stage.label})"))
    for name, value in zip(STRUCT_NAMES, contrib, strict=True):
        raw = x[model.dim + STRUCT_NAMES.index(name)]
        word = STRUCT_WORDS[name][0 if raw >= 0 else 1]
        pushes.append((sign * float(value), word))
    decisive = [f"{label} {v:+.1f}" for v, label in sorted(pushes, reverse=True) if v >= _MIN_CUE]
    ps = "/".join(f"{v:.2f}" for v in p)
    if index == len(TIERS) - 1:
        head, risk = f"P(frontier) {p[-1]:.2f}", stage.risk_frontier
    elif index == 1:
        head = f"P(above medium) {float(p[-1]):.2f} vs risk {stage.risk_frontier:.2f}, "
        head, risk = head + f"P(above small) {1.0 - float(p[0]):.2f}", stage.risk
    else:
        head, risk = f"P(above small) {1.0 - float(p[0]):.2f}", stage.risk
    parts = [f"{head} vs risk {risk:.2f} [small/medium/frontier {ps}]"]
    if decisive:
        parts.append("toward " + TIERS[index] + ": " + ", ".join(decisive[:3]))
    if model.dim and embedding.size:
        near = ", ".join(f"{k} {s:.2f}" for k, s in model.nearest_kinds(embedding))
        parts.append(f"nearest training tasks: {near}")
    return "; ".join(parts)
