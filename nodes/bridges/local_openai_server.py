"""vLLM's own OpenAI-compatible HTTP server over an engine already running in this process.

The demo's stand-in for an external API when no provider key is set: the bridge then talks
HTTP, through the official SDKs, to the real vLLM server code (`/v1/chat/completions`,
`/v1/messages`), answering with the real model, without the cost of starting a second engine
(about a minute on 2 cores). It uses vLLM's server builder (`build_app`, `init_app_state`), an
internal API pinned with the vLLM version this project installs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from typing import Any

log = logging.getLogger(__name__)


def _free_loopback_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class LocalOpenAIServer:
    """Serves a vLLM AsyncLLM over HTTP on loopback until `stop`."""

    def __init__(self, *, model_path: str, served_name: str) -> None:
        self._model_path = model_path
        self._served_name = served_name
        self._server: Any = None
        self._task: asyncio.Task[None] | None = None
        # Known before start, so a bridge can be configured with it.
        self.port = _free_loopback_port()
        self.base_url = f"http://127.0.0.1:{self.port}"

    async def start(self, engine: Any) -> str:
        """Serve `engine` (a running AsyncLLM); returns the base URL (no /v1)."""
        import uvicorn
        from vllm.entrypoints.launchers.api_server.app_state import init_app_state
        from vllm.entrypoints.launchers.app import build_app
        from vllm.entrypoints.launchers.cli_args import make_arg_parser
        from vllm.utils.argparse_utils import FlexibleArgumentParser

        port = self.port
        parser = make_arg_parser(FlexibleArgumentParser())  # type: ignore[no-untyped-call]
        args = parser.parse_args(
            [
                "--model",
                self._model_path,
                "--served-model-name",
                self._served_name,
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--disable-uvicorn-access-log",
            ]
        )
        tasks = await engine.get_supported_tasks()
        app = build_app(args, tasks, engine.model_config)
        await init_app_state(engine, app.state, args, tasks)
        config = uvicorn.Config(
            app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"
        )
        self._server = uvicorn.Server(config)
        self._task = asyncio.create_task(self._server.serve(), name="local-openai-server")
        while not self._server.started:
            if self._task.done():
                self._task.result()  # raises what stopped it
            await asyncio.sleep(0.05)
        log.info("vLLM OpenAI-compatible server for %s on %s", self._served_name, self.base_url)
        return self.base_url

    async def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
