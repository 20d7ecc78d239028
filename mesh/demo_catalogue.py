"""The demo's three tiers: SmolLM2 self-hosted (small), a medium and a frontier external model.

One place for both `mesh demo` (which starts them: the external two as bridges to the real
provider when a key is set, else as stand-ins over the local engine) and `mesh route-eval`
(whose default catalogue they are). Stand-ins are priced and tiered like the real models named
here, from the dated list prices in nodes/data/prices.yaml. Light to import: no engine.
"""

from __future__ import annotations

from typing import Literal

from mesh.config import BridgeConfig, ModelPrice, NodeConfig, default_config
from mesh.v1 import types_pb2

TierName = Literal["medium", "frontier"]

# What the stand-ins are priced and tiered like (rows of nodes/data/prices.yaml).
STAND_IN_FOR: dict[TierName, str] = {"medium": "gpt-4o-mini", "frontier": "gpt-4o"}
# Real models per provider when its key is set (override: MESH_DEMO_<PROVIDER>_<TIER>_MODEL).
DEMO_MODELS: dict[str, dict[TierName, str]] = {
    "openai": {"medium": "gpt-4o-mini", "frontier": "gpt-4o"},
    "anthropic": {"medium": "claude-3-5-haiku", "frontier": "claude-sonnet-4-5"},
}
# Aliases a prompt can pin: "external" stays the medium model (the demo's first bridge).
ALIASES: dict[TierName, list[str]] = {
    "medium": ["external", "external-medium"],
    "frontier": ["external-frontier"],
}


def stand_in_price(tier: TierName) -> tuple[ModelPrice, str]:
    """The price row a stand-in copies, and the table's date."""
    from nodes.bridges.prices import load_price_table

    table = load_price_table()
    price = table.lookup(STAND_IN_FOR[tier])
    if price is None or price.tier is None or price.tier.value != tier:
        raise ValueError(f"nodes/data/prices.yaml has no {tier} row for {STAND_IN_FOR[tier]}")
    return price, table.prices_as_of


def small_node() -> NodeConfig:
    """The self-hosted SmolLM2 node of the default config."""
    return default_config().nodes[0]


def node_card(node: NodeConfig, provider: str = "self-hosted") -> types_pb2.ModelCard:
    """The ModelCard a configured node (or a bridge's node config) publishes."""
    external = node.engine == "bridge"
    return types_pb2.ModelCard(
        model_id=node.model,
        provider=provider,
        kind=types_pb2.MODEL_KIND_EXTERNAL if external else types_pb2.MODEL_KIND_SELF_HOSTED,
        tier=node.tier.proto,
        context_window=node.context_window or 8192,
        input_price_per_mtok=node.input_price_per_mtok,
        output_price_per_mtok=node.output_price_per_mtok,
        capabilities=node.capabilities,
        aliases=node.aliases,
    )


def bridge_card(bridge: BridgeConfig) -> types_pb2.ModelCard:
    """The card a configured bridge will publish: its price from its config or the table."""
    from nodes.bridges.prices import bridge_price

    card = node_card(bridge.node_config(bridge_price(bridge)), provider=bridge.provider)
    return card


def demo_cards() -> list[types_pb2.ModelCard]:
    """Small SmolLM2, then the medium and frontier stand-ins as the demo publishes them."""
    cards = [node_card(small_node())]
    for tier in ("medium", "frontier"):
        price, _ = stand_in_price(tier)  # type: ignore[arg-type]
        cards.append(
            types_pb2.ModelCard(
                model_id=f"{STAND_IN_FOR[tier]}-stand-in",  # type: ignore[index]
                provider=price.provider or "openai",
                kind=types_pb2.MODEL_KIND_EXTERNAL,
                tier=price.tier.proto,  # type: ignore[union-attr]
                context_window=price.context_window or 128000,
                input_price_per_mtok=price.input,
                output_price_per_mtok=price.output,
                capabilities=["chat"],
                aliases=ALIASES[tier],  # type: ignore[index]
            )
        )
    return cards
