"""UpstreamPool keeps one stub per open channel, and a new one when the channel changes."""

from __future__ import annotations

import asyncio

from mesh.router.catalog import Catalog
from mesh.router.upstream import UpstreamPool


def test_a_stub_is_reused_until_its_node_moves() -> None:
    async def go() -> None:
        pool = UpstreamPool(Catalog())
        try:
            first = pool.stub("n1", "127.0.0.1:50999")
            assert pool.stub("n1", "127.0.0.1:50999") is first
            other = pool.stub("n2", "127.0.0.1:50998")
            assert other is not first
            moved = pool.stub("n1", "127.0.0.1:50997")
            assert moved is not first
            assert pool.stub("n1", "127.0.0.1:50997") is moved
        finally:
            await pool.close()

    asyncio.run(go())


def test_closing_the_pool_forgets_its_stubs() -> None:
    async def go() -> None:
        pool = UpstreamPool(Catalog())
        first = pool.stub("n1", "127.0.0.1:50999")
        await pool.close()
        again = pool.stub("n1", "127.0.0.1:50999")
        assert again is not first
        await pool.close()

    asyncio.run(go())
