"""What a request costs: pre-call estimates for routing and budgets, real cost from usage.

No tokenizer on the hot path: prompt size is estimated from characters, rounded up so budgets
err on the safe side; the real figure comes from the node's reported usage.
"""

from __future__ import annotations

from collections.abc import Sequence

from mesh.config import BaselineSettings
from mesh.v1 import types_pb2

CHARS_PER_TOKEN = 4  # English averages ~4 characters per token; no tokenizer on the hot path
TOKENS_PER_MESSAGE = 4  # chat-template overhead per turn


def estimate_prompt_tokens(messages: Sequence[types_pb2.ChatMessage]) -> int:
    """Cheap prompt-size estimate, deliberately rounded up so budgets err on the safe side."""
    return sum(-(-len(m.content) // CHARS_PER_TOKEN) + TOKENS_PER_MESSAGE for m in messages)


def price_cost(
    input_price_per_mtok: float, output_price_per_mtok: float, input_tokens: int, output_tokens: int
) -> float:
    return (input_tokens * input_price_per_mtok + output_tokens * output_price_per_mtok) / 1e6


def estimate_cost(card: types_pb2.ModelCard, prompt_tokens: int, max_tokens: int) -> float:
    """Pre-call estimate: the whole prompt plus max_tokens of output at the card's price."""
    return price_cost(
        card.input_price_per_mtok, card.output_price_per_mtok, prompt_tokens, max_tokens
    )


def actual_cost(card: types_pb2.ModelCard, usage: types_pb2.Usage) -> float:
    """Cost from reported usage; cached prompt tokens at the cached price when one is set."""
    cached = min(usage.cached_input_tokens, usage.input_tokens)
    cached_price = card.cached_input_price_per_mtok or card.input_price_per_mtok
    return (
        (usage.input_tokens - cached) * card.input_price_per_mtok
        + cached * cached_price
        + usage.output_tokens * card.output_price_per_mtok
    ) / 1e6


def baseline_cost(baseline: BaselineSettings, input_tokens: int, output_tokens: int) -> float:
    """What the configured premium baseline model would have charged."""
    return price_cost(
        baseline.input_price_per_mtok, baseline.output_price_per_mtok, input_tokens, output_tokens
    )


def price_label(card: types_pb2.ModelCard) -> str:
    return f"${card.input_price_per_mtok:g}/M"
