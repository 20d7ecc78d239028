"""Bridge config: validation, key sources, and no key in repr, dumps or errors."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from mesh.config import BridgeConfig, MissingApiKey, ModelPrice, Tier, describe_errors
from nodes.bridges.prices import bridge_price, load_price_table

KEY = "sk-unit-test-key-7f3a9c2e1b"


def test_repr_and_dumps_never_hold_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    config = BridgeConfig(id="b", provider="openai", model="gpt-4o-mini")
    assert config.read_api_key() == KEY
    for text in (repr(config), str(config), config.model_dump_json(), str(config.model_dump())):
        assert KEY not in text
    assert config.key_source == "env OPENAI_API_KEY"


def test_key_from_a_named_variable_or_a_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("MY_KEY", KEY)
    assert (
        BridgeConfig(id="b", provider="anthropic", model="m", api_key_env="MY_KEY").read_api_key()
        == KEY
    )
    key_file = tmp_path / "key"
    key_file.write_text(KEY + "\n")
    config = BridgeConfig(id="b", provider="anthropic", model="m", api_key_file=key_file)
    assert config.read_api_key() == KEY
    assert KEY not in repr(config) and config.key_source == f"file {key_file}"


def test_missing_keys_name_the_source_only(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    with pytest.raises(MissingApiKey, match="ANTHROPIC_API_KEY is not set"):
        BridgeConfig(id="b", provider="anthropic", model="m").read_api_key()
    empty = tmp_path / "empty"
    empty.write_text("\n")
    with pytest.raises(MissingApiKey, match="is empty"):
        BridgeConfig(id="b", provider="openai", model="m", api_key_file=empty).read_api_key()
    with pytest.raises(MissingApiKey, match="cannot read"):
        BridgeConfig(
            id="b", provider="openai", model="m", api_key_file=tmp_path / "absent"
        ).read_api_key()


def test_an_openai_compatible_server_may_need_no_key() -> None:
    config = BridgeConfig(
        id="b", provider="openai-compatible", model="m", base_url="http://127.0.0.1:8000/v1"
    )
    assert config.read_api_key() is None and config.key_source == "none"


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({"provider": "openai-compatible"}, "needs base_url"),
        ({"provider": "openai", "api_key_env": "A", "api_key_file": "/k"}, "not both"),
        ({"provider": "openai", "base_url": "ftp://x"}, "not an http"),
        ({"provider": "cohere"}, "provider"),
        ({"provider": "openai", "api_key": KEY}, "api_key"),  # a key is never a config value
    ],
)
def test_invalid_configs(fields: dict[str, object], problem: str) -> None:
    with pytest.raises(ValidationError, match=problem) as caught:
        BridgeConfig.model_validate({"id": "b", "model": "m", **fields})
    # What the CLI prints names the field and the reason, never the value given.
    described = describe_errors(caught.value)
    assert problem.split()[0] in described or "api_key" in described
    assert KEY not in described


def test_prices_tier_and_window_come_from_the_table_unless_configured() -> None:
    table = load_price_table()
    config = BridgeConfig(id="b", provider="anthropic", model="claude-haiku-4-5-20251001")
    price = bridge_price(config, table)
    assert price == table.models["claude-haiku-4-5"]
    node = config.node_config(price)
    assert node.engine == "bridge" and node.tier is Tier.LARGE
    assert node.context_window == 200000 and node.input_price_per_mtok == price.input
    own = ModelPrice(input=0.5, output=1.0)
    config = BridgeConfig(
        id="b", provider="openai", model="gpt-4o", price=own, tier=Tier.SMALL, context_window=999
    )
    node = config.node_config(bridge_price(config, table))
    assert (node.output_price_per_mtok, node.tier, node.context_window) == (1.0, Tier.SMALL, 999)


def test_a_model_without_a_price_is_refused() -> None:
    config = BridgeConfig(
        id="b", provider="openai-compatible", model="my-llama", base_url="http://127.0.0.1:1/v1"
    )
    with pytest.raises(ValueError, match="no price for model 'my-llama'"):
        bridge_price(config)


def test_limits_become_the_admission_limit() -> None:
    config = BridgeConfig.model_validate(
        {
            "id": "b",
            "provider": "openai",
            "model": "gpt-4o-mini",
            "limits": {"max_concurrent": 3, "requests_per_minute": 60},
        }
    )
    assert config.node_config(bridge_price(config)).max_inflight == 3


def test_an_unreadable_key_file_is_named(tmp_path: Path) -> None:
    absent = tmp_path / "absent-key"
    config = BridgeConfig(id="b", provider="openai", model="m", api_key_file=absent)
    with pytest.raises(MissingApiKey, match=f"cannot read API key file {absent}"):
        config.read_api_key()


@pytest.mark.parametrize(
    ("field", "address"),
    [("listen", "nohost"), ("listen", "h:70000"), ("router_address", "0.0.0.0:1"),
     ("advertise_address", "h:0")],
)  # fmt: skip
def test_addresses_follow_the_node_rules(field: str, address: str) -> None:
    with pytest.raises(ValidationError, match=field):
        BridgeConfig.model_validate({"id": "b", "provider": "openai", "model": "m", field: address})
    assert BridgeConfig(id="b", provider="openai", model="m", listen="0.0.0.0:0").listen
