"""mesh.router.upstream_calls against a real grpc.aio server on loopback: a stream read or a
unary reply that is abandoned (the waiter cancelled, or its timeout passed) cancels the call and
lets the pending batch finish by itself - grpc.aio frees a batch only then (grpc/grpc#43360; the
router's memory figures are tests/reliability/test_abandoned_streams.py's and
test_abandoned_unary.py's)."""

from __future__ import annotations

import asyncio
import gc
import sys
from collections.abc import AsyncIterator
from typing import Any

import grpc
import grpc.aio
import pytest

from mesh.router import upstream_calls

_METHOD = "/probe.Probe/Stream"
_UNARY = "/probe.Probe/Unary"


async def _first_then_wait(
    request: bytes, context: grpc.aio.ServicerContext
) -> AsyncIterator[bytes]:
    yield b"first"
    if request == b"end":
        return
    await asyncio.Event().wait()  # until the client cancels


async def _answer_or_wait(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
    if request == b"fail":
        await context.abort(grpc.StatusCode.FAILED_PRECONDITION, "the node says no")
    if request.startswith(b"wait"):
        await asyncio.sleep(float(request[4:] or 60))
    return b"answer to " + request


@pytest.fixture
async def server_port() -> AsyncIterator[int]:
    server = grpc.aio.server()
    handlers = {
        "Stream": grpc.unary_stream_rpc_method_handler(_first_then_wait),
        "Unary": grpc.unary_unary_rpc_method_handler(_answer_or_wait),
    }
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler("probe.Probe", handlers),)
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    yield port
    await server.stop(0)


@pytest.fixture
async def channel(server_port: int) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server_port}") as chan:
        yield chan


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
        if upstream_calls.pending_abandoned() == 0:
            break
        await asyncio.sleep(0.01)
    gc.collect()


async def test_reads_return_each_event_then_eof(channel: grpc.aio.Channel) -> None:
    call = _open(channel, b"end")
    assert await upstream_calls.read(call) == b"first"
    assert await upstream_calls.read(call, 5.0) is grpc.aio.EOF
    assert await call.code() == grpc.StatusCode.OK


async def test_a_reader_cancelled_mid_read_cancels_the_call_and_the_read_finishes_by_itself(
    channel: grpc.aio.Channel, unretrieved: list[dict[str, Any]]
) -> None:
    call = _open(channel, b"wait")
    assert await upstream_calls.read(call) == b"first"
    reader = asyncio.ensure_future(upstream_calls.read(call))
    await asyncio.sleep(0.05)  # the read is in flight
    reader.cancel()
    with pytest.raises(asyncio.CancelledError):
        await reader
    assert await call.code() == grpc.StatusCode.CANCELLED
    await _settle()
    assert upstream_calls.pending_abandoned() == 0
    assert unretrieved == []


async def test_a_read_past_its_timeout_cancels_the_call(
    channel: grpc.aio.Channel, unretrieved: list[dict[str, Any]]
) -> None:
    call = _open(channel, b"wait")
    assert await upstream_calls.read(call, 5.0) == b"first"
    with pytest.raises(TimeoutError):
        await upstream_calls.read(call, 0.05)
    assert await call.code() == grpc.StatusCode.CANCELLED
    await _settle()
    assert upstream_calls.pending_abandoned() == 0
    assert unretrieved == []


async def test_a_call_cancelled_elsewhere_ends_the_read_as_grpc_does(
    channel: grpc.aio.Channel,
) -> None:
    """The upstream pool gives up a frozen node's call with call.cancel(): the reader sees
    CancelledError, as with a bare call.read(), and nothing is left pending."""
    call = _open(channel, b"wait")
    assert await upstream_calls.read(call) == b"first"
    reader = asyncio.ensure_future(upstream_calls.read(call))
    await asyncio.sleep(0.05)
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await reader
    assert upstream_calls.pending_abandoned() == 0


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
    reader = asyncio.ensure_future(upstream_calls.read(call))
    await asyncio.sleep(0)
    reader.cancel()
    with pytest.raises(asyncio.CancelledError):
        await reader
    assert call.cancelled and not call.pending.cancelled()
    assert upstream_calls.pending_abandoned() == 1
    call.pending.set_exception(RuntimeError("the call's status"))  # how it ends is moot
    await _settle()
    assert upstream_calls.pending_abandoned() == 0


# -- unary replies ----------------------------------------------------------------------------
def _call(channel: grpc.aio.Channel, request: bytes) -> Any:
    return channel.unary_unary(_UNARY)(request, timeout=10.0)


async def test_a_reply_is_the_response_or_the_calls_error(channel: grpc.aio.Channel) -> None:
    assert await upstream_calls.reply(_call(channel, b"hello")) == b"answer to hello"
    with pytest.raises(grpc.aio.AioRpcError) as failed:
        await upstream_calls.reply(_call(channel, b"fail"))
    assert failed.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert upstream_calls.pending_abandoned() == 0


async def test_a_waiter_cancelled_mid_reply_cancels_the_call_natively(
    channel: grpc.aio.Channel, unretrieved: list[dict[str, Any]]
) -> None:
    call = _call(channel, b"wait")
    waiter = asyncio.ensure_future(upstream_calls.reply(call))
    await asyncio.sleep(0.05)  # the call is in flight
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert await call.code() == grpc.StatusCode.CANCELLED
    await _settle()
    assert upstream_calls.pending_abandoned() == 0
    assert unretrieved == []


async def test_a_unary_call_cancelled_elsewhere_ends_the_reply_with_cancelled_error(
    channel: grpc.aio.Channel,
) -> None:
    """How the upstream pool gives up a frozen node's call: upstream_calls.cancel."""
    call = _call(channel, b"wait")
    waiter = asyncio.ensure_future(upstream_calls.reply(call))
    await asyncio.sleep(0.05)
    assert upstream_calls.cancel(call)
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert not upstream_calls.cancel(call), "a call with its status cannot be cancelled again"
    assert upstream_calls.pending_abandoned() == 0


async def _client_growth_mb(port: int, how: str, calls: int) -> float:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.integration.abandoning_client",
        f"127.0.0.1:{port}",
        how,
        str(calls),
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode == 0, out
    return float(out.decode().split()[-1])


async def test_abandoned_unary_calls_leave_no_memory_behind(server_port: int) -> None:
    """A client process abandons unary calls after as many to warm up; through upstream_calls
    it stays within +0.6-1.1 MB over 4,000 (measured here). grpc.aio's own way is measured in
    the same run and printed beside it, not asserted: on this machine it leaks the call
    (grpcio 1.85.4: +93-98 MB over 8,000 calls, +5.8 to +42 MB over 4,000), but whether a
    cancel lands while the response is pending depends on timing, and a fresh CI machine read
    +12.3 MB over 4,000 and +2.2 MB over 8,000. The mechanism itself is asserted
    deterministically above (test_our_cancellation_never_reaches_the_pending_read), and the
    router's RSS under abandoned calls in tests/reliability/test_abandoned_unary.py."""
    ours = await _client_growth_mb(server_port, "mesh", 4_000)
    grpc_own = await _client_growth_mb(server_port, "grpc", 4_000)
    print(
        f"abandoned unary calls, 4,000 each: through upstream_calls {ours:+.1f} MB, "
        f"grpc.aio's own cancel {grpc_own:+.1f} MB"
    )
    assert ours < 5, f"abandoned through upstream_calls: {ours:+.1f} MB (grpc.aio: {grpc_own:+.1f})"
