"""The semantic cache's verification over a real router: a near-identical question that asks
the opposite reaches a node; the same question reworded is answered from the cache and says how
it was checked. FakeEngine nodes (a deterministic test engine), real MiniLM, real gRPC.
"""

from __future__ import annotations

from mesh.config import CacheSettings
from tests.helpers import request
from tests.integration.test_router_features import fake_node_config, mesh

STORED = "Is Python faster than Java?"


async def test_a_vetoed_near_match_goes_to_a_node_and_a_verified_one_is_served() -> None:
    async with mesh([fake_node_config("a")], cache=CacheSettings(enabled=True)) as m:
        first = await m.stub.Generate(request(STORED), timeout=30)
        assert not first.route.cache_hit
        await m.router.settle.drain()  # the cache write runs beside the response
        # MiniLM puts the reverse at cosine ~0.99: only verification keeps it from being served.
        reverse = await m.stub.Generate(request("Is Java faster than Python?"), timeout=30)
        assert not reverse.route.cache_hit and reverse.route.node_id == "a"
        assert m.engine("a").completed == 2
        polite = await m.stub.Generate(
            request("Hello! Is Python faster than Java? Thanks."), timeout=30
        )
        assert polite.route.cache_hit and polite.text == first.text
        assert polite.route.reason.startswith("cache hit (semantic, similarity ")
        assert "verified: same words after normalising" in polite.route.reason
        assert m.engine("a").completed == 2
        assert m.router.cache is not None and m.router.cache.stats.vetoes >= 1
