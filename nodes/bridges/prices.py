"""Prices of external models, and the cost of one request from its real token counts.

The shipped table (`nodes/data/prices.yaml`) states the date of its prices; a bridge config can
replace the whole table or override the price of its own model.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from mesh.config import BridgeConfig, ModelPrice

DEFAULT_PRICE_TABLE = Path(__file__).resolve().parents[1] / "data" / "prices.yaml"
_PER_TOKEN = 1e-6  # prices are per million tokens
_SNAPSHOT = re.compile(r"(?P<base>.+?)-(?:\d{4}-\d{2}-\d{2}|\d{8}|latest)")


class PriceTableError(ValueError):
    """A price table that cannot be used; the message names the file and the problem."""


@dataclass(frozen=True)
class ProviderUsage:
    """Token counts a provider reported for one request.

    `input_tokens` counts every prompt token, including those read from or written to the
    provider's prompt cache; the two cache counts are subsets of it.
    """

    input_tokens: int
    output_tokens: int
    cached_input_tokens: int = 0
    cache_write_input_tokens: int = 0


def request_cost_usd(price: ModelPrice, usage: ProviderUsage) -> float:
    """Cost of one request: each kind of prompt token at its own rate, plus the output."""
    cached = min(usage.cached_input_tokens, usage.input_tokens)
    written = min(usage.cache_write_input_tokens, usage.input_tokens - cached)
    plain = usage.input_tokens - cached - written
    return (
        plain * price.input
        + cached * price.cached_input_rate
        + written * price.cache_write_rate
        + usage.output_tokens * price.output
    ) * _PER_TOKEN


class PriceTable(BaseModel):
    """A dated table of model prices."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    prices_as_of: str = Field(..., pattern=r"^\d{4}-\d{2}-\d{2}$", description="YYYY-MM-DD")
    source: str = ""
    models: dict[str, ModelPrice] = Field(default_factory=dict)

    def lookup(self, model: str) -> ModelPrice | None:
        """The price of `model`, also for dated snapshots (`gpt-4o-mini-2024-07-18`).

        Only a date or `-latest` may follow a table key: `gpt-4o-audio-preview` is priced
        differently from `gpt-4o` and must not silently get its price.
        """
        if model in self.models:
            return self.models[model]
        match = _SNAPSHOT.fullmatch(model)
        return self.models.get(match.group("base")) if match else None


def load_price_table(path: str | Path | None = None) -> PriceTable:
    """Read a price table (default: the shipped one)."""
    source = Path(path) if path is not None else DEFAULT_PRICE_TABLE
    try:
        data = yaml.safe_load(source.read_text(encoding="utf-8"))
    except OSError as exc:
        raise PriceTableError(f"{source}: cannot read: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise PriceTableError(f"{source}: not valid YAML: {exc}") from None
    try:
        return PriceTable.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '(top level)'}: {err['msg']}"
            for err in exc.errors()
        )
        raise PriceTableError(f"{source}: {problems}") from None


def bridge_price(bridge: BridgeConfig, table: PriceTable | None = None) -> ModelPrice:
    """The bridge's model price: its own `price:`, else the table's; ValueError if neither.

    `table` defaults to the bridge's `price_table` file, else the shipped table.
    """
    if bridge.price is not None:
        return bridge.price
    table = table or load_price_table(bridge.price_table)
    price = table.lookup(bridge.model)
    if price is None:
        raise ValueError(
            f"no price for model {bridge.model!r} in the price table "
            f"(as of {table.prices_as_of}): set a price for this bridge"
        )
    return price
