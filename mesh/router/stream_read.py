"""One read of an upstream gRPC stream that never leaks when it is abandoned.

grpc.aio frees a read's native batch (its `grpc_op` array) only when the read itself completes;
a read whose awaiting task is cancelled - a timeout, or the router's own cancellation when its
client walks away - leaves it allocated (grpc/grpc#43360, open for grpcio 1.85). Measured with
`python -m benchmarks.soak`: the default router grew 17.4 MB over 19,695 streams abandoned after
their first chunk (~0.9 KB each, linear) while a completed stream left nothing.

So the read runs as its own task and what is cancelled is the *call*: `call.cancel()` completes
the pending read (with CANCELLED), which frees its batch; the abandoned task is kept referenced
until then and its outcome retrieved (it is moot).
"""

from __future__ import annotations

import asyncio
from typing import Any

_ABANDONED: set[asyncio.Future[Any]] = set()


async def read(call: Any, timeout_s: float | None = None) -> Any:
    """`await call.read()` (grpc.aio.EOF at the end), within `timeout_s` if given.

    On timeout the call is cancelled and TimeoutError raised; on our own cancellation the call
    is cancelled and CancelledError propagates. A read that fails by itself (the call's status,
    or CancelledError when someone else cancelled the call) raises as `call.read()` does.
    """
    reading: asyncio.Future[Any] = asyncio.ensure_future(call.read())
    try:
        if timeout_s is None:
            return await asyncio.shield(reading)
        async with asyncio.timeout(timeout_s):
            return await asyncio.shield(reading)
    except BaseException:
        if not reading.done():
            abandon(call, reading)
        raise


def abandon(call: Any, reading: asyncio.Future[Any]) -> None:
    """Cancel `call`, letting its pending `reading` complete (and free its batch) on its own."""
    call.cancel()
    _ABANDONED.add(reading)
    reading.add_done_callback(_settled)


def _settled(reading: asyncio.Future[Any]) -> None:
    _ABANDONED.discard(reading)
    if not reading.cancelled():
        reading.exception()  # retrieved: the call was given up, how its read ended is moot


def pending_abandoned() -> int:
    """Abandoned reads still waiting for their call to complete (for tests)."""
    return len(_ABANDONED)
