"""Waiting on an upstream gRPC call in a way that never leaks when the wait is abandoned.

grpc.aio frees a call's native batch (its `grpc_op` array, and for a unary call the whole call)
only when the batch's own task completes; cancelling the task that awaits it - a timeout, or the
router's own cancellation when its client walks away - leaves it allocated (grpc/grpc#43360,
open for grpcio 1.85). Measured on this machine (grpcio 1.85.4):
- a stream read: the default router grew 17.4 MB over 19,695 streams abandoned after their first
  chunk (`python -m benchmarks.soak`, ~0.9 KB each, linear);
- a unary call: `UnaryUnaryCall.cancel()` itself cancels the task awaiting the response, as does
  a router handler cancelled by its client while it awaits the call. The router grew 8.2 MB over
  7,533 calls its clients abandoned while the node was still thinking, in 22 s
  (tests/reliability/test_abandoned_unary.py); a bare client +42 MB over 4,000 (~10 KB each).

So the wait runs as its own task, shielded, and what is cancelled is the *native call*: that
completes the pending batch (with CANCELLED), which frees it; the abandoned task is kept
referenced until then and its outcome retrieved (it is moot). Cancelled this way: the router
+1.9 MB over the same load (flat after its warm-up), the bare client +0.6 MB.
"""

from __future__ import annotations

import asyncio
from typing import Any

import grpc.aio
from grpc.aio._call import Call as _NativeCall  # private: the native half of cancel()

_ABANDONED: set[asyncio.Future[Any]] = set()


async def read(call: Any, timeout_s: float | None = None) -> Any:
    """`await call.read()` (grpc.aio.EOF at the end), within `timeout_s` if given.

    On timeout the call is cancelled and TimeoutError raised; on our own cancellation the call
    is cancelled and CancelledError propagates. A read that fails by itself (the call's status,
    or CancelledError when someone else cancelled the call) raises as `call.read()` does.
    """
    return await _shielded(call, asyncio.ensure_future(call.read()), timeout_s)


async def reply(call: Any) -> Any:
    """`await call` for a unary call: its response, or the call's AioRpcError.

    On our own cancellation the call is cancelled natively and CancelledError propagates; when
    someone else cancels the call with `cancel()` below, CancelledError is raised here too.
    """
    return await _shielded(call, asyncio.ensure_future(call), None)


def cancel(call: Any) -> bool:
    """Cancel `call` upstream (the node aborts its work) without cancelling the task that awaits
    a unary response: grpc.aio's public `UnaryUnaryCall.cancel()` does both, and the cancelled
    task leaks the call (module docstring). The native cancel is the base class's `cancel`, the
    first half of the public one; calls of any other kind (streams, intercepted calls) take the
    public `cancel()`, which does not leak for them (measured for streams above)."""
    if isinstance(call, _NativeCall) and isinstance(call, grpc.aio.UnaryUnaryCall):
        return bool(_NativeCall.cancel(call))
    return bool(call.cancel())


async def _shielded(call: Any, waiting: asyncio.Future[Any], timeout_s: float | None) -> Any:
    try:
        if timeout_s is None:
            return await asyncio.shield(waiting)
        async with asyncio.timeout(timeout_s):
            return await asyncio.shield(waiting)
    except BaseException:
        if not waiting.done():
            abandon(call, waiting)
        raise


def abandon(call: Any, waiting: asyncio.Future[Any]) -> None:
    """Cancel `call`, letting its pending `waiting` complete (and free its batch) on its own."""
    cancel(call)
    _ABANDONED.add(waiting)
    waiting.add_done_callback(_settled)


def _settled(waiting: asyncio.Future[Any]) -> None:
    _ABANDONED.discard(waiting)
    if not waiting.cancelled():
        waiting.exception()  # retrieved: the call was given up, how it ended is moot


def pending_abandoned() -> int:
    """Abandoned waits still pending until their call completes (for tests)."""
    return len(_ABANDONED)
