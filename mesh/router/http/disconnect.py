"""A caller that hangs up stops the work done for it, as a cancelled gRPC call does.

While a unary answer (or a stream's first event) is awaited, nothing is written to the client,
so nothing would notice it left: the generation would run to its end on the node. The work runs
in its own task beside a watch on the connection; `http.disconnect` cancels the work, and the
pipeline's own cancellation path aborts the node's generation. (Once a stream is writing,
Starlette's StreamingResponse watches the connection itself.)
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

from starlette.types import Receive

_T = TypeVar("_T")


class ClientGone(Exception):
    """The client disconnected before its answer was ready."""


async def _disconnected(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


async def unless_disconnected(receive: Receive, work: Awaitable[_T]) -> _T:
    """`work`'s result, or ClientGone (with `work` cancelled) if the client leaves first."""
    task = asyncio.ensure_future(work)
    watch = asyncio.ensure_future(_disconnected(receive))
    try:
        await asyncio.wait((task, watch), return_when=asyncio.FIRST_COMPLETED)
    except BaseException:  # this request itself cancelled (server stopping)
        task.cancel()
        raise
    finally:
        watch.cancel()
    if task.done():
        return task.result()
    task.cancel()
    await asyncio.wait((task,))  # its cleanup (the upstream abort) runs before we answer
    if not task.cancelled():
        task.exception()  # retrieved: a failure while cancelling is moot now
    raise ClientGone
