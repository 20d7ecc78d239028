"""Run a bridge node: the shared node runtime (server, health, registration) over a bridge."""

from __future__ import annotations

from mesh.config import BridgeConfig
from mesh.telemetry.setup import Telemetry
from nodes.bridges.backend import BridgeBackend
from nodes.bridges.prices import PriceTable, bridge_price
from nodes.bridges.provider import ProviderClient
from nodes.bridges.servicer import BridgeServicer
from nodes.runtime import ENGINE_HEALTH_INTERVAL_S, NodeRuntime


class BridgeRuntime(NodeRuntime):
    """One bridge node; `start` reads the API key and serves, `stop` closes the HTTP pool."""

    def __init__(
        self,
        bridge: BridgeConfig,
        *,
        price_table: PriceTable | None = None,
        client: ProviderClient | None = None,
        health_interval_s: float = ENGINE_HEALTH_INTERVAL_S,
        telemetry: Telemetry | None = None,
    ) -> None:
        self.bridge = bridge
        self.price = bridge_price(bridge, price_table)
        node = bridge.node_config(self.price)
        assert node.context_window is not None
        backend = BridgeBackend(bridge, node.context_window, client)
        super().__init__(node, backend, health_interval_s=health_interval_s, telemetry=telemetry)
        self.servicer = BridgeServicer(node, backend, self.price, telemetry=telemetry)
