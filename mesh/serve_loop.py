"""Run a server object in the foreground until Ctrl-C or SIGTERM, then stop it gracefully."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Awaitable, Callable


async def serve_until_signal(
    start: Callable[[], Awaitable[str]],
    stop: Callable[[float], Awaitable[None]],
    *,
    grace_s: float,
    on_ready: Callable[[str], None],
) -> None:
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stopping.set)
    address = await start()
    on_ready(address)
    try:
        await stopping.wait()
    finally:
        await stop(grace_s)
