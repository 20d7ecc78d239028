"""Price tables and the cost of a request from real usage."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from mesh.config import ModelPrice, Tier
from nodes.bridges.prices import (
    PriceTable,
    PriceTableError,
    ProviderUsage,
    load_price_table,
    request_cost_usd,
)


def test_shipped_table_states_its_date_and_prices_common_models() -> None:
    table = load_price_table()
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", table.prices_as_of)
    for model in ("gpt-4o-mini", "gpt-4.1", "claude-sonnet-4-5", "claude-haiku-4-5"):
        price = table.lookup(model)
        assert price is not None, model
        assert price.input > 0 and price.output > price.input
        assert price.cached_input_rate < price.input
        assert price.context_window and price.tier is not None


def test_dated_snapshots_take_their_base_models_price() -> None:
    table = load_price_table()
    mini = table.lookup("gpt-4o-mini-2024-07-18")
    assert mini is not None and mini == table.models["gpt-4o-mini"]
    assert table.lookup("gpt-4o-2024-08-06") == table.models["gpt-4o"]
    assert table.lookup("claude-sonnet-4-5-20250929") == table.models["claude-sonnet-4-5"]
    assert table.lookup("claude-haiku-4-5-latest") == table.models["claude-haiku-4-5"]
    assert table.lookup("gpt-4o-minix") is None
    assert table.lookup("gpt-4o-audio-preview") is None  # priced differently: no guessing
    assert table.lookup("llama-3") is None


def test_cost_prices_each_kind_of_token_at_its_rate() -> None:
    price = ModelPrice(input=3.0, output=15.0, cached_input=0.3, cache_write=3.75)
    usage = ProviderUsage(
        input_tokens=1_000, output_tokens=200, cached_input_tokens=600, cache_write_input_tokens=300
    )
    expected = (100 * 3.0 + 600 * 0.3 + 300 * 3.75 + 200 * 15.0) / 1e6
    assert request_cost_usd(price, usage) == pytest.approx(expected, rel=1e-12)


def test_cache_rates_default_to_the_input_price() -> None:
    price = ModelPrice(input=2.0, output=8.0)
    usage = ProviderUsage(input_tokens=500, output_tokens=50, cached_input_tokens=500)
    assert request_cost_usd(price, usage) == pytest.approx((500 * 2.0 + 50 * 8.0) / 1e6)


def test_inconsistent_usage_never_prices_more_cached_tokens_than_input() -> None:
    price = ModelPrice(input=1.0, output=1.0, cached_input=0.0)
    usage = ProviderUsage(input_tokens=10, output_tokens=0, cached_input_tokens=50)
    assert request_cost_usd(price, usage) == 0.0


def test_custom_table_file(tmp_path: Path) -> None:
    path = tmp_path / "prices.yaml"
    path.write_text(
        'prices_as_of: "2030-01-01"\nmodels:\n  m1: {input: 1, output: 2, tier: small}\n'
    )
    table = load_price_table(path)
    assert table.lookup("m1") == ModelPrice(input=1, output=2, tier=Tier.SMALL)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("prices_as_of: yesterday\nmodels: {}\n", "prices_as_of"),
        ('prices_as_of: "2030-01-01"\nmodels:\n  m: {input: -1, output: 1}\n', "models.m.input"),
        (
            'prices_as_of: "2030-01-01"\nmodels:\n  m: {input: 1, output: 1, colour: red}\n',
            "colour",
        ),
        ("prices_as_of: [", "not valid YAML"),
    ],
)
def test_bad_tables_name_the_problem(tmp_path: Path, text: str, problem: str) -> None:
    path = tmp_path / "prices.yaml"
    path.write_text(text)
    with pytest.raises(PriceTableError, match=re.escape(problem)):
        load_price_table(path)


def test_missing_table_file(tmp_path: Path) -> None:
    with pytest.raises(PriceTableError, match="cannot read"):
        load_price_table(tmp_path / "absent.yaml")


def test_table_model_is_strict() -> None:
    with pytest.raises(ValueError):
        PriceTable.model_validate({"prices_as_of": "2030-01-01", "models": {}, "extra": 1})
