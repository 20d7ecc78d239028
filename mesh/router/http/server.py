"""An ASGI app served by uvicorn on the router's own event loop.

The pipeline's state (connections to nodes, budgets, caches) lives on that loop, so the HTTP
server must too: no second loop, no thread. uvicorn's `Server.serve()` would also take over
SIGINT/SIGTERM, which the process's serve loop owns, so this drives the same three steps
(startup, main loop, shutdown) itself. The socket is bound here, so a taken port is an
OSError naming the address (uvicorn would log and exit the process) and port 0 works. With TLS
the SSLContext is the mesh's reloading one (mesh.contract.tls.server_ssl_context): rotated
certificate files reach new connections without a restart.
"""

from __future__ import annotations

import asyncio
import logging
import socket

import uvicorn
from starlette.types import ASGIApp

from mesh.config import ServerTls, is_loopback
from mesh.contract.serving import bound_address
from mesh.contract.tls import server_ssl_context

log = logging.getLogger(__name__)


def bind(listen: str) -> socket.socket:
    """A bound TCP socket on `listen` (host:port, port 0: a free one).

    Made with proto IPPROTO_TCP, as getaddrinfo would: asyncio sets TCP_NODELAY only on
    connections whose socket says so, and without it every keep-alive response waited for the
    client's delayed ACK (44 ms p50 per request, measured here, against 0.6 ms with it).
    """
    host, _, port = listen.rpartition(":")
    host = host.strip("[]")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, int(port)))
    except OSError as exc:
        sock.close()
        raise OSError(exc.errno, f"cannot listen on {listen}: {exc.strerror}") from None
    return sock


class AsgiServer:
    """start(listen) -> bound address; stop(grace_s) lets in-flight responses finish."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.address = ""
        self._server: uvicorn.Server | None = None
        self._ticker: asyncio.Task[None] | None = None

    async def start(self, listen: str, *, tls: ServerTls | None = None) -> str:
        """Serve on `listen` (HTTPS with `tls`; its files are read now, before binding)."""
        context = server_ssl_context(tls, "router HTTP front") if tls is not None else None
        sock = bind(listen)
        config = uvicorn.Config(
            self.app,
            lifespan="off",  # the router starts and stops what the app uses
            log_config=None,  # the process's logging, not uvicorn's
            log_level="warning",  # its INFO lines ("Shutting down") say nothing the mesh's don't
            access_log=False,  # one log line per request would cost more than the door
            server_header=False,
            proxy_headers=False,  # never trust X-Forwarded-For: there is no proxy in front
            ws="none",
        )
        config.load()
        # Set after load(): uvicorn serves whatever context config.ssl holds, in every version
        # this project allows (its ssl_context_factory arrived later).
        config.ssl = context
        server = uvicorn.Server(config)
        server.lifespan = config.lifespan_class(config)
        try:
            await server.startup(sockets=[sock])
        except BaseException:
            sock.close()
            raise
        self._server = server
        # The main loop refreshes the Date header once a second and notices should_exit.
        self._ticker = asyncio.create_task(server.main_loop(), name="http-front-ticker")
        self.address = bound_address(listen, sock.getsockname()[1])
        if context is None and not is_loopback(listen):
            log.warning("HTTP front in plaintext on %s, reachable from other machines", listen)
        return self.address

    async def stop(self, grace_s: float) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.should_exit = True
        if self._ticker is not None:
            await self._ticker
        # Typed int, used as asyncio.timeout(seconds): a fraction is fine.
        server.config.timeout_graceful_shutdown = max(grace_s, 0.01)  # type: ignore[assignment]
        await server.shutdown(sockets=None)
