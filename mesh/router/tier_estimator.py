"""Estimate the model tier a request needs from its content.

Two views, combined: hand-tuned features (length, code, math word problems, multi-step cues,
conversation depth) that need no model and always work, and a vote of the nearest labelled
exemplars in MiniLM embedding space, which catches tasks the features have no words for. The
tier chosen is the smallest one whose estimated chance of being too small stays under a risk
bound: sending a frontier task to a small model costs a wrong answer, the other way only money.

The MiniLM embedder (mesh/router/embeddings.py) is shared by the whole process: the response
cache asks for the same text, so a new prompt is embedded once. It loads on first use, so a
router with embeddings disabled never imports torch for it.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from mesh.config import EstimatorSettings, Tier, tier_name
from mesh.router.embeddings import Embedder, Vector, aembed, embedding_text, shared_embedder
from mesh.v1 import types_pb2

DEFAULT_EXEMPLARS = Path(__file__).with_name("data") / "tier_exemplars.jsonl"


# -- features --------------------------------------------------------------------------------
_CODE_FENCE = re.compile(r"```")
_CODE_SYNTAX = re.compile(
    r"(^\s*(def|class|import|from|function|const|let|var|public|private|#include|SELECT)\b"
    r"|>>>|=>|\{\s*$|;\s*$|\breturn\b|\(\)\s*:|\bself\.)",
    re.MULTILINE,
)
_CODE_TASK = re.compile(
    r"\b(write|implement|complete|fix|debug|refactor|optimi[sz]e|code|program|function|script|"
    r"algorithm|unit tests?|passes|docstring|compile|regex|sql query|class)\b",
    re.IGNORECASE,
)
# An explicit request to produce code, in plain words ("write a function that ...").
_CODE_REQUEST = re.compile(
    r"\b(write|implement|create|build|code up|complete)\b.{0,40}?\b(function|program|script|"
    r"class|method|algorithm|endpoint|query|regex|parser|module|unit tests?)\b",
    re.IGNORECASE | re.DOTALL,
)
_CODE_LANG = re.compile(
    r"\b(python|javascript|typescript|java|rust|golang|c\+\+|c#|sql|bash|haskell|kotlin)\b",
    re.IGNORECASE,
)
_NUMBER = re.compile(
    r"(?<![\w.])\$?\d+(?:[.,]\d+)*%?"
    r"|\b(two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|twenty|thirty|forty|fifty|"
    r"hundred|thousand|dozen|twice|thrice|half|third|quarter|double|triple)\b",
    re.IGNORECASE,
)
_MATH_WORDS = re.compile(
    r"\b(total|each|per|percent|times as|as many|more than|less than|fewer|older|younger|"
    r"left over|remaining|average|ratio|profit|discount|tax|costs?|spends?|earns?|altogether|"
    r"solve|equation|prove|integral|derivative|probability|calculate|compute|miles|hours|"
    r"minutes|dollars|pounds|price)\b",
    re.IGNORECASE,
)
# A question about a quantity: with two or more numbers in the text, a word problem.
_QUANTITY_QUESTION = re.compile(
    r"\b(how (many|much|old|long|far|fast|often)|what (is|was|will be) the (total|cost|price|"
    r"average|percentage|difference|sum|number)|in total|altogether|how .* (left|remain))\b",
    re.IGNORECASE,
)
_REASONING = re.compile(
    r"\b(step[- ]by[- ]step|reason|explain why|justify|derive|proof|analy[sz]e|trade-?offs?|"
    r"compare and contrast|design|architect|plan|strategy for|evaluate|optimi[sz]e|"
    r"first,? .* then|consider .* and)\b",
    re.IGNORECASE,
)
_ROUTINE = re.compile(
    r"\b(rewrite|rephrase|paraphrase|summari[sz]e|translate|correct the grammar|fix the grammar|"
    r"proofread|extract|classify|categori[sz]e|label|list the|sentiment|tl;?dr|shorten|"
    r"make (it|this) (more )?(formal|polite|concise)|complete the sentence)\b",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Features:
    """What the feature view saw in a request (kept for the human reason and for tests)."""

    chars: int
    turns: int
    code: float
    math: float
    reasoning: float
    routine: float

    @property
    def hard_logit(self) -> float:
        """Log-odds that the task needs the frontier tier."""
        length = min(self.chars / 1500.0, 2.0)
        depth = min(max(self.turns - 1, 0) / 8.0, 1.0)
        return (
            -2.2
            + 2.6 * self.code
            + 3.0 * self.math
            + 1.3 * self.reasoning
            + 0.8 * length
            + 0.6 * depth
            - 1.5 * self.routine
        )


def _clip(x: float) -> float:
    return max(0.0, min(1.0, x))


FEATURE_CHARS = 8000


def _task(messages: Sequence[types_pb2.ChatMessage]) -> str:
    """The last user turn: what the request asks for."""
    return next(
        (m.content for m in reversed(messages) if m.role == types_pb2.ROLE_USER),
        messages[-1].content if messages else "",
    )


def extract_features(messages: Sequence[types_pb2.ChatMessage]) -> Features:
    """Feature view of the conversation; the last user turn (the task) weighs most.

    The regexes read at most the first and last FEATURE_CHARS / 2 characters of the task: the
    request's ask sits at its ends, and this runs on the event loop.
    """
    task = _task(messages)
    if len(task) > FEATURE_CHARS:
        task = task[: FEATURE_CHARS // 2] + "\n" + task[-FEATURE_CHARS // 2 :]
    total_chars = sum(len(m.content) for m in messages)
    fences = len(_CODE_FENCE.findall(task))
    syntax = len(_CODE_SYNTAX.findall(task))
    code_task = len(_CODE_TASK.findall(task))
    code = _clip(0.5 * min(fences, 2) + 0.15 * min(syntax, 4) + 0.2 * min(code_task, 2))
    if _CODE_LANG.search(task):
        code = _clip(code + 0.2)
    if _CODE_REQUEST.search(task):
        code = _clip(code + 0.4)
    if code_task == 0 and fences == 0:
        code *= 0.6  # code pasted for a routine task (explain, summarise) is not a coding task
    numbers = len(_NUMBER.findall(task))
    math_words = len(_MATH_WORDS.findall(task))
    math = _clip(0.1 * min(max(numbers - 1, 0), 5) + 0.1 * min(math_words, 4))
    if numbers >= 2 and _QUANTITY_QUESTION.search(task):
        math = _clip(math + 0.6)  # several quantities and a question about one: a word problem
    reasoning = _clip(0.35 * len(_REASONING.findall(task)))
    routine = _clip(0.6 * len(_ROUTINE.findall(task)))
    return Features(total_chars, len(messages), code, math, reasoning, routine)


def feature_distribution(features: Features) -> npt.NDArray[np.float64]:
    """Probabilities over the four tiers from the feature view.

    The features only tell easy from hard; the hard mass is spread over the upper tiers (most on
    frontier) so that only a clearly hard request leaves the small tier, and middling evidence
    lands on medium/large rather than jumping straight to the most expensive tier.
    """
    d = 1.0 / (1.0 + math.exp(-features.hard_logit))
    out: npt.NDArray[np.float64] = np.array([1.0 - d, 0.1 * d, 0.2 * d, 0.7 * d])
    return out


def _logit(p: float) -> float:
    p = min(max(p, 0.05), 0.95)
    return math.log(p / (1.0 - p))


def combine(
    features: Features, knn: npt.NDArray[np.float64], weight: float
) -> npt.NDArray[np.float64]:
    """Merge the exemplar vote into the feature view as added log-odds of "not small".

    MiniLM neighbours follow topic more than difficulty (a history question sits next to a
    history essay), so the vote shifts the feature evidence rather than replacing it; it also
    decides how the "not small" mass splits over medium, large and frontier.
    """
    d = 1.0 / (1.0 + math.exp(-(features.hard_logit + weight * _logit(1.0 - float(knn[0])))))
    upper = knn[1:] / knn[1:].sum() if knn[1:].sum() > 0 else np.zeros(3)
    shape = 0.5 * upper + 0.5 * np.array([0.1, 0.2, 0.7])
    out: npt.NDArray[np.float64] = np.concatenate(([1.0 - d], d * shape / shape.sum()))
    return out


def _feature_reason(features: Features, tier: int) -> str:
    cues = {
        "code to write": features.code,
        "math word problem": features.math,
        "multi-step reasoning": features.reasoning,
    }
    cue, strength = max(cues.items(), key=lambda kv: kv[1])
    if tier >= types_pb2.MODEL_TIER_LARGE and strength >= 0.3:
        return cue
    if tier >= types_pb2.MODEL_TIER_LARGE and features.chars > 3000:
        return "long request"
    if features.routine >= 0.6:
        return "rewrite/extraction task"
    if features.turns > 6:
        return "long conversation"
    return "short factual question" if features.chars < 300 else "routine request"


# -- exemplars -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Exemplar:
    text: str
    tier: int
    kind: str


def load_exemplars(path: Path) -> list[Exemplar]:
    """JSONL rows of {"text", "tier": small|medium|large|frontier, "kind"}."""
    out = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        row = json.loads(line)
        tier = Tier.named(row.get("tier"))
        if tier is None or not row.get("text"):
            raise ValueError(f"{path}:{lineno}: needs text and tier in {[t.value for t in Tier]}")
        out.append(Exemplar(row["text"], tier.proto, str(row.get("kind", ""))))
    return out


@dataclass(frozen=True)
class TierEstimate:
    """The tier a request needs, how sure the estimator is, and why in a few words."""

    tier: int  # types_pb2.ModelTier value
    confidence: float
    reason: str
    probabilities: tuple[float, float, float, float]  # small, medium, large, frontier

    @property
    def name(self) -> str:
        return tier_name(self.tier)


class TierEstimator:
    """Features plus nearest exemplars; thread-safe, the embedder loads on first use."""

    def __init__(
        self,
        settings: EstimatorSettings | None = None,
        embedder: Embedder | None = None,
        exemplars: Sequence[Exemplar] | None = None,
    ) -> None:
        self.settings = settings or EstimatorSettings()
        self._embedder: Embedder | None = None
        if self.settings.embeddings:
            self._embedder = embedder or shared_embedder()
        if exemplars is None:
            exemplars = load_exemplars(self.settings.exemplars_path or DEFAULT_EXEMPLARS)
        self._exemplars = list(exemplars)
        self._matrix: Vector | None = None
        self._lock = threading.Lock()

    @property
    def uses_embeddings(self) -> bool:
        return self._embedder is not None and bool(self._exemplars)

    def _exemplar_matrix(self) -> Vector:
        with self._lock:
            if self._matrix is None:
                assert self._embedder is not None
                self._matrix = self._embedder.embed([e.text for e in self._exemplars])
            return self._matrix

    def warm_up(self) -> None:
        """Load the model and embed the exemplars now instead of on the first request."""
        if self.uses_embeddings:
            self._exemplar_matrix()

    def _knn(self, query: Vector) -> tuple[npt.NDArray[np.float64], Exemplar]:
        matrix = self._exemplar_matrix()
        sims = matrix @ query
        k = min(self.settings.neighbours, len(sims))
        top = np.argpartition(-sims, k - 1)[:k]
        # A sharp softmax: the closest exemplars dominate, distant ones barely vote.
        weights = np.exp((sims[top] - sims[top].max()) / 0.05)
        dist = np.zeros(4, dtype=np.float64)
        for idx, w in zip(top, weights, strict=True):
            dist[self._exemplars[int(idx)].tier - 1] += float(w)
        nearest = self._exemplars[int(top[int(np.argmax(sims[top]))])]
        return dist / dist.sum(), nearest

    def estimate(
        self, messages: Sequence[types_pb2.ChatMessage], min_tier: int = 0
    ) -> TierEstimate:
        """The tier `messages` need (never below `min_tier`), with confidence and reason.

        Blocking (embeds on this thread); the router's request path uses `aestimate`.
        """
        query = None
        if self.uses_embeddings:
            assert self._embedder is not None
            query = self._embedder.embed([embedding_text(_task(messages))])[0]
        return self._estimate(messages, min_tier, query)

    async def aestimate(
        self, messages: Sequence[types_pb2.ChatMessage], min_tier: int = 0
    ) -> TierEstimate:
        """`estimate` with the embedding off the event loop, batched with concurrent requests."""
        query = None
        if self.uses_embeddings:
            assert self._embedder is not None
            if self._matrix is None:
                await asyncio.to_thread(self._exemplar_matrix)
            query = (await aembed(self._embedder, [embedding_text(_task(messages))]))[0]
        return self._estimate(messages, min_tier, query)

    def _estimate(
        self, messages: Sequence[types_pb2.ChatMessage], min_tier: int, query: Vector | None
    ) -> TierEstimate:
        features = extract_features(messages)
        dist = feature_distribution(features)
        nearest: Exemplar | None = None
        if query is not None:
            knn, nearest = self._knn(query)
            dist = combine(features, knn, self.settings.embedding_weight)
        # Smallest tier whose probability of being too small is below the risk bound.
        above = np.cumsum(dist[::-1])[::-1]  # above[i] = P(needs tier index >= i)
        index = 0
        while index < 3 and above[index + 1] > self.settings.underroute_risk:
            index += 1
        tier = Tier.ordered_protos()[max(index, (min_tier or 1) - 1)]
        reason = _feature_reason(features, tier)
        if nearest is not None and nearest.kind and nearest.tier == tier:
            reason = f"{reason}; like '{nearest.kind}' examples"
        probs = (float(dist[0]), float(dist[1]), float(dist[2]), float(dist[3]))
        # Confidence: that the chosen tier is enough (or, for frontier, that it is needed).
        chosen = tier - 1
        confidence = float(dist[3]) if chosen == 3 else 1.0 - float(above[chosen + 1])
        if min_tier and chosen != index:
            reason = f"{reason}; raised to min_tier {tier_name(tier)}"
        return TierEstimate(tier, round(confidence, 3), reason, probs)
