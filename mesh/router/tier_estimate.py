"""What a tier estimate says, apart from the model that makes it.

The routing decision reads estimates; only the estimator (tier_estimator.py: numpy, the model
files, the embedders) makes them. Keeping the result type here lets a router whose catalogue
never needs an estimate route without importing any of that (estimator_loader.py).
"""

from __future__ import annotations

from dataclasses import dataclass

from mesh.config import Tier, tier_name

TIERS = ("small", "medium", "frontier")  # the classes the model tells apart, cheapest first
# The model's classes as ModelTier values; `large` has no class of its own (no public data
# labels it apart): the policy serves a medium estimate from a large card when it is cheapest.
TIER_VALUES = {name: Tier.named(name).proto for name in TIERS}  # type: ignore[union-attr]
# Every tier an estimate can name, lowest first.
ESTIMATED_TIERS: tuple[int, ...] = tuple(sorted(TIER_VALUES.values()))


@dataclass(frozen=True)
class TierEstimate:
    """The tier a request needs, how sure the estimator is, and the evidence in a few words."""

    tier: int  # types_pb2.ModelTier value
    confidence: float
    reason: str
    probabilities: tuple[float, float, float, float]  # small, medium, large, frontier
    # The model that decided: "static" (clear of its bounds), "MiniLM", or "structure".
    decided_by: str = ""

    @property
    def name(self) -> str:
        return tier_name(self.tier)
