"""BridgeBackend: an external API as an InferenceBackend.

Per request: rate limits (before any provider call) -> attempts with retries (only before any
output went out, bounded by the caller's deadline) -> real usage and the number of attempts on
the final item. The caller's deadline and whether it streams reach the backend through
`call_scope`, set by the bridge servicer for the duration of one RPC.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import time
from collections.abc import AsyncGenerator, Iterator, Sequence
from dataclasses import dataclass

from mesh.config import BridgeConfig
from mesh.contract.errors import DeadlineExceeded, EngineUnavailable, MeshError
from nodes.bridges.errors import is_provider_error, map_provider_error
from nodes.bridges.limits import RateLimiter, Reservation
from nodes.bridges.prices import ProviderUsage
from nodes.bridges.provider import ProviderClient, ProviderReply, ProviderRequest
from nodes.bridges.retry import next_delay
from nodes.engines.base import (
    EngineInfo,
    EngineLoad,
    GenerationEnd,
    GenerationInput,
    InferenceBackend,
    Message,
    TextChunk,
)

log = logging.getLogger(__name__)

# Tokens a chat message costs beyond its text (role markers, separators) in common templates.
_PER_MESSAGE_TOKENS = 4


@dataclass(frozen=True)
class CallOptions:
    """What the RPC knows and the backend needs: the deadline and the call's shape."""

    deadline: float | None = None  # time.monotonic() seconds; None: no deadline
    stream: bool = True


_NO_CALL = CallOptions()  # frozen: safe as a shared default
_CALL: contextvars.ContextVar[CallOptions] = contextvars.ContextVar(
    "bridge_call",
    default=_NO_CALL,
)


@contextlib.contextmanager
def call_scope(options: CallOptions) -> Iterator[None]:
    """Make `options` visible to the backend for the code run inside the block."""
    token = _CALL.set(options)
    try:
        yield
    finally:
        _CALL.reset(token)


def set_call_options(options: CallOptions) -> None:
    """Set `options` for the rest of the current context (a streaming RPC's task)."""
    _CALL.set(options)


@dataclass(frozen=True)
class BridgeEnd(GenerationEnd):
    """A bridge's last item: what every engine reports, plus cache writes and attempts."""

    cache_write_input_tokens: int = 0
    attempts: int = 1
    usage_reported: bool = True


def estimate_tokens(messages: Sequence[Message]) -> int:
    """A deliberately high token estimate (UTF-8 bytes / 3) for limits and window checks.

    The provider counts exactly; this only has to keep a request that cannot fit from costing
    a call, and to charge the rate limiter before usage is known.
    """
    return sum(len(m.content.encode("utf-8")) // 3 + _PER_MESSAGE_TOKENS for m in messages) + 3


class BridgeBackend(InferenceBackend):
    """One external model; the provider client is built in `start`, when the key is read."""

    def __init__(self, config: BridgeConfig, context_window: int, client: ProviderClient | None):
        self.config = config
        self._info = EngineInfo(
            model_id=config.model,
            context_window=context_window,
            extra={"engine": "bridge", "provider": config.provider},
        )
        self._client = client
        self._secret: str | None = None
        self.limiter = RateLimiter(
            config.limits,
            bridge_id=config.id,
            metadata={"provider": config.provider, "model": config.model},
        )
        self._running = 0
        self._healthy: bool | None = None
        self._probed_at = float("-inf")
        self.attempts_total = 0

    @property
    def info(self) -> EngineInfo:
        return self._info

    async def start(self) -> None:
        if self._client is not None:
            return
        from nodes.bridges.clients import create_client

        key = self.config.read_api_key()
        self._secret = key  # kept only to scrub provider messages that might echo it
        self._client = create_client(self.config, key)
        log.info(
            "bridge %s: %s model %s at %s (key from %s)",
            self.config.id,
            self.config.provider,
            self.config.model,
            self.config.resolved_base_url,
            self.config.key_source,
        )

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.close()

    @property
    def client(self) -> ProviderClient:
        if self._client is None:
            raise EngineUnavailable("the bridge is not started", metadata=self._metadata())
        return self._client

    @property
    def healthy(self) -> bool | None:
        """The last probe's verdict (None before the first probe)."""
        return self._healthy

    def _metadata(self) -> dict[str, str]:
        return {"provider": self.config.provider, "model": self.config.model}

    # --- InferenceBackend -----------------------------------------------------------------
    def count_prompt_tokens(self, messages: Sequence[Message]) -> int:
        return estimate_tokens(messages)

    def load(self) -> EngineLoad:
        return EngineLoad(running=self._running)

    async def abort(self, request_id: str) -> None:
        # Closing the generator already closed the HTTP stream; nothing else runs upstream.
        return None

    async def check_health(self) -> None:
        """Probe the provider's model list, at most once per probe interval.

        A key the provider rejects or an API that does not answer makes the node NOT_SERVING,
        so routers stop choosing it; rate limiting does not (the API is up).
        """
        now = time.monotonic()
        if self._healthy is None or now - self._probed_at >= self.config.health_probe_interval_s:
            self._probed_at = now
            try:
                await self.client.probe(timeout_s=5.0)
                self._healthy = True
            except Exception as exc:
                # Anything but a rate limit means the API cannot serve now; an unexpected
                # error must not kill the health watcher either.
                if is_provider_error(exc):
                    error = self._map(exc)
                    self._healthy = error.reason == "UPSTREAM_RATE_LIMITED"
                    reason = error.message
                else:
                    self._healthy, reason = False, f"unexpected {type(exc).__name__}"
                if not self._healthy:
                    log.warning("bridge %s probe failed: %s", self.config.id, reason)
        if not self._healthy:
            raise EngineUnavailable(
                f"{self.config.provider} API is not answering", metadata=self._metadata()
            )

    def _map(self, exc: BaseException) -> MeshError:
        return map_provider_error(
            exc, provider=self.config.provider, model=self.config.model, secret=self._secret
        )

    # --- one request ----------------------------------------------------------------------
    async def generate(
        self, request: GenerationInput
    ) -> AsyncGenerator[TextChunk | GenerationEnd, None]:
        options = _CALL.get()
        provider_request = ProviderRequest(self.config.model, request.messages, request.sampling)
        reservation = self.limiter.acquire(
            estimate_tokens(request.messages) + request.sampling.max_tokens
        )
        usage: ProviderUsage | None = None
        self._running += 1
        try:
            attempts = 0
            while True:
                attempts += 1
                self.attempts_total += 1
                output_sent = False
                try:
                    timeout = self._attempt_timeout(options.deadline)
                    if options.stream:
                        reply = None
                        async with contextlib.aclosing(
                            self.client.stream(provider_request, timeout)
                        ) as pieces:
                            async for piece in pieces:
                                if isinstance(piece, str):
                                    if piece:
                                        output_sent = True
                                        yield TextChunk(piece)
                                else:
                                    reply = piece
                        assert reply is not None, "provider stream ended without a reply"
                    else:
                        reply = await self.client.complete(provider_request, timeout)
                        if reply.text:
                            output_sent = True
                            yield TextChunk(reply.text)
                except Exception as exc:
                    if not is_provider_error(exc):
                        raise
                    error = self._map(exc)
                    error.metadata["attempts"] = str(attempts)
                    delay = next_delay(
                        error,
                        policy=self.config.retry,
                        attempts=attempts,
                        output_sent=output_sent,
                        time_left_s=_time_left(options.deadline),
                    )
                    if delay is None:
                        raise error from None
                    log.info(
                        "bridge %s attempt %d failed (%s); retrying in %.2fs",
                        self.config.id,
                        attempts,
                        error.reason,
                        delay,
                    )
                    await asyncio.sleep(delay)
                    continue
                usage = reply.usage
                yield self._end(reply, attempts)
                return
        finally:
            self._running -= 1
            self._settle(reservation, usage)

    def _settle(self, reservation: Reservation, usage: ProviderUsage | None) -> None:
        actual = None if usage is None else usage.input_tokens + usage.output_tokens
        self.limiter.settle(reservation, actual)

    def _attempt_timeout(self, deadline: float | None) -> float:
        left = _time_left(deadline)
        if left is not None and left <= 0:
            raise DeadlineExceeded(
                "the deadline passed before the provider was called", metadata=self._metadata()
            )
        return self.config.request_timeout_s if left is None else min(left, 1e6)

    def _end(self, reply: ProviderReply, attempts: int) -> BridgeEnd:
        if not reply.usage_reported:
            log.warning(
                "bridge %s: %s reported no usage; cost is 0", self.config.id, self.config.provider
            )
        usage = reply.usage
        return BridgeEnd(
            finish_reason=reply.finish_reason,
            input_tokens=usage.input_tokens,
            output_tokens=usage.output_tokens,
            cached_input_tokens=usage.cached_input_tokens,
            cache_write_input_tokens=usage.cache_write_input_tokens,
            attempts=attempts,
            usage_reported=reply.usage_reported,
        )


def _time_left(deadline: float | None) -> float | None:
    return None if deadline is None else deadline - time.monotonic()
