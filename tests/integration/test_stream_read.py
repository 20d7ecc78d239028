"""mesh.router.stream_read against a real grpc.aio server on loopback: a read that is abandoned
(the reader cancelled, or its timeout passed) cancels the call and lets the pending read finish
by itself - grpc.aio frees a read's native batch only then (grpc/grpc#43360; the memory figure
is tests/reliability/test_abandoned_streams.py's)."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator
from typing import Any

import grpc
import grpc.aio
import pytest

from mesh.router import stream_read

_METHOD = "/probe.Probe/Stream"


async def _first_then_wait(
    request: bytes, context: grpc.aio.ServicerContext
) -> AsyncIterator[bytes]:
    yield b"first"
    if request == b"end":
        return
    await asyncio.Event().wait()  # until the client cancels


@pytest.fixture
async def channel() -> AsyncIterator[grpc.aio.Channel]:
    server = grpc.aio.server()
    handler = grpc.unary_stream_rpc_method_handler(_first_then_wait)
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler("probe.Probe", {"Stream": handler}),)
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as chan:
        yield chan
    await server.stop(0)


def _open(channel: grpc.aio.Channel, request: bytes) -> Any:
    return channel.unary_stream(_METHOD)(request, timeout=10.0)


@pytest.fixture
async def unretrieved() -> list[dict[str, Any]]:
    """What the test's loop reported to its exception handler ('exception never retrieved')."""
    seen: list[dict[str, Any]] = []
    asyncio.get_running_loop().set_exception_handler(lambda _loop, context: seen.append(context))
    return seen


async def _settle() -> None:
    """Until no abandoned read is pending; then collect, so an unretrieved error would show."""
    for _ in range(200):
        if stream_read.pending_abandoned() == 0:
            break
        await asyncio.sleep(0.01)
    gc.collect()


async def test_reads_return_each_event_then_eof(channel: grpc.aio.Channel) -> None:
    call = _open(channel, b"end")
    assert await stream_read.read(call) == b"first"
    assert await stream_read.read(call, 5.0) is grpc.aio.EOF
    assert await call.code() == grpc.StatusCode.OK


async def test_a_reader_cancelled_mid_read_cancels_the_call_and_the_read_finishes_by_itself(
    channel: grpc.aio.Channel, unretrieved: list[dict[str, Any]]
) -> None:
    call = _open(channel, b"wait")
    assert await stream_read.read(call) == b"first"
    reader = asyncio.ensure_future(stream_read.read(call))
    await asyncio.sleep(0.05)  # the read is in flight
    reader.cancel()
    with pytest.raises(asyncio.CancelledError):
        await reader
    assert await call.code() == grpc.StatusCode.CANCELLED
    await _settle()
    assert stream_read.pending_abandoned() == 0
    assert unretrieved == []


async def test_a_read_past_its_timeout_cancels_the_call(
    channel: grpc.aio.Channel, unretrieved: list[dict[str, Any]]
) -> None:
    call = _open(channel, b"wait")
    assert await stream_read.read(call, 5.0) == b"first"
    with pytest.raises(TimeoutError):
        await stream_read.read(call, 0.05)
    assert await call.code() == grpc.StatusCode.CANCELLED
    await _settle()
    assert stream_read.pending_abandoned() == 0
    assert unretrieved == []


async def test_a_call_cancelled_elsewhere_ends_the_read_as_grpc_does(
    channel: grpc.aio.Channel,
) -> None:
    """The upstream pool gives up a frozen node's call with call.cancel(): the reader sees
    CancelledError, as with a bare call.read(), and nothing is left pending."""
    call = _open(channel, b"wait")
    assert await stream_read.read(call) == b"first"
    reader = asyncio.ensure_future(stream_read.read(call))
    await asyncio.sleep(0.05)
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await reader
    assert stream_read.pending_abandoned() == 0


class _HeldCall:
    """A call whose read completes only when the test says: shows who cancels what."""

    def __init__(self) -> None:
        self.pending: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self.cancelled = False

    async def read(self) -> bytes:
        return await self.pending

    def cancel(self) -> bool:
        self.cancelled = True
        return True


async def test_our_cancellation_never_reaches_the_pending_read() -> None:
    """The crux of the leak: the read's own awaiting must not be cancelled; the call is."""
    call = _HeldCall()
    reader = asyncio.ensure_future(stream_read.read(call))
    await asyncio.sleep(0)
    reader.cancel()
    with pytest.raises(asyncio.CancelledError):
        await reader
    assert call.cancelled and not call.pending.cancelled()
    assert stream_read.pending_abandoned() == 1
    call.pending.set_exception(RuntimeError("the call's status"))  # how it ends is moot
    await _settle()
    assert stream_read.pending_abandoned() == 0
