"""A client process that abandons unary calls and prints its own RSS growth in MB.

`python -m tests.integration.abandoning_client ADDRESS grpc|mesh CALLS`: calls to
/probe.Probe/Unary (an answer after 20 ms), 32 at a time, each abandoned 5 ms in - `grpc`:
grpc.aio's own way (the awaiting task cancelled), `mesh`: through mesh.router.upstream_calls.
CALLS calls warm the process up (pools, allocator arenas), then the growth over CALLS more is
printed. Its own process, so the server's memory is not counted with the client's.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys

import grpc.aio

from mesh.router import upstream_calls

_CONCURRENCY = 32


def _rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * 4096 / 2**20


async def _abandon(address: str, how: str, calls: int) -> float:
    async with grpc.aio.insecure_channel(address) as channel:
        method = channel.unary_unary("/probe.Probe/Unary")
        gate = asyncio.Semaphore(_CONCURRENCY)

        async def one() -> None:
            async with gate:
                # Abandoned calls complete a little later; a client creating new calls faster
                # than that would measure its backlog, not a leak. (A router's own clients bound
                # its pace the same way.)
                for _ in range(5_000):
                    if upstream_calls.pending_abandoned() <= _CONCURRENCY:
                        break
                    await asyncio.sleep(0.001)
                call = method(b"wait0.02", timeout=10.0)
                waiter = asyncio.ensure_future(
                    upstream_calls.reply(call) if how == "mesh" else call
                )
                await asyncio.sleep(0.005)
                waiter.cancel()
                with contextlib.suppress(asyncio.CancelledError, grpc.aio.AioRpcError):
                    await waiter

        await asyncio.gather(*(one() for _ in range(calls)))
        before = _rss_mb()
        await asyncio.gather(*(one() for _ in range(calls)))
        for _ in range(500):  # the abandoned calls complete
            if upstream_calls.pending_abandoned() == 0:
                break
            await asyncio.sleep(0.01)
        return _rss_mb() - before


if __name__ == "__main__":
    address, how, calls = sys.argv[1], sys.argv[2], int(sys.argv[3])
    print(f"{asyncio.run(_abandon(address, how, calls)):.2f}")
