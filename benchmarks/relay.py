"""A do-nothing grpc.aio relay (BENCH.md path N): the floor of any Python gRPC hop.

It forwards raw bytes for every InferenceService method without parsing them, so its cost is
the hop itself; benchmark use only.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from typing import Any

import grpc
import grpc.aio


def _identity(data: bytes) -> bytes:
    return data


class _Relay(grpc.GenericRpcHandler):
    def __init__(self, channel: grpc.aio.Channel) -> None:
        self._channel = channel

    def service(self, details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        method: str = details.method  # type: ignore[attr-defined]
        if method.endswith("GenerateStream"):
            upstream_stream = self._channel.unary_stream(method, _identity, _identity)

            async def stream(request: bytes, context: Any) -> Any:
                async for item in upstream_stream(request, timeout=context.time_remaining()):
                    yield item

            return grpc.unary_stream_rpc_method_handler(stream, _identity, _identity)
        upstream_unary = self._channel.unary_unary(method, _identity, _identity)

        async def unary(request: bytes, context: Any) -> bytes:
            return await upstream_unary(request, timeout=context.time_remaining())  # type: ignore[no-any-return]

        return grpc.unary_unary_rpc_method_handler(unary, _identity, _identity)


async def serve(listen: str, target: str) -> None:
    channel = grpc.aio.insecure_channel(target)
    server = grpc.aio.server()
    server.add_generic_rpc_handlers([_Relay(channel)])
    server.add_insecure_port(listen)
    await server.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.stop(1)
    await channel.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--listen", required=True)
    parser.add_argument("--target", required=True)
    args = parser.parse_args()
    asyncio.run(serve(args.listen, args.target))


if __name__ == "__main__":
    main()
