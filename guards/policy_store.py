"""Holds the active policy: atomic swap, hot reload from a file, apply through the API.

Readers take `store.active` once per request and use that snapshot throughout, so a swap in
the middle of a request never mixes two policies; a broken new policy never replaces a good one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path

from opentelemetry.trace import Tracer

from guards.chain import GuardChain
from guards.errors import InvalidPolicy
from guards.policy_loader import LoadedPolicy, load_policy
from guards.verdict import Stage
from mesh.config import DEFAULT_TENANT

log = logging.getLogger(__name__)

DEFAULT_POLICY_PATH = Path(__file__).resolve().parent / "policies" / "default.yaml"


class PolicyStore:
    """The one place the active policy lives; swapped by reference, never mutated."""

    def __init__(self, initial: LoadedPolicy, *, tracer: Tracer | None = None) -> None:
        self._active = initial
        self.tracer = tracer  # for guard spans; None: the process's global tracer provider
        self._chains: dict[tuple[str, str, Stage], GuardChain] = {}
        self._watch_task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    @classmethod
    def from_file(
        cls, path: str | Path = DEFAULT_POLICY_PATH, *, tracer: Tracer | None = None
    ) -> PolicyStore:
        p = Path(path)
        return cls(load_policy(p.read_text(encoding="utf-8"), str(p)), tracer=tracer)

    @property
    def active(self) -> LoadedPolicy:
        return self._active

    @property
    def version(self) -> str:
        return self._active.version

    def chain(
        self, stage: Stage, tenant: str = DEFAULT_TENANT, policy: LoadedPolicy | None = None
    ) -> GuardChain:
        """The cached chain for a stage and tenant of a snapshot (default: the active one)."""
        snapshot = policy or self._active
        key = (snapshot.version, tenant if tenant in snapshot.policy.tenants else "", stage)
        chain = self._chains.get(key)
        if chain is None:
            chain = GuardChain(
                snapshot.guards_for(key[1]),
                stage,
                snapshot.version,
                policy_id=snapshot.policy_id,
                tracer=self.tracer,
            )
            if len(self._chains) > 256:  # old versions' chains; cheap to rebuild
                self._chains.clear()
            self._chains[key] = chain
        return chain

    def apply(
        self, yaml_text: str, *, dry_run: bool = False, source: str = "api"
    ) -> tuple[LoadedPolicy, str]:
        """Validate (and unless dry_run, install) a policy; returns it and the previous version.

        Raises InvalidPolicy and leaves the active policy in force when the text is broken.
        """
        loaded = load_policy(yaml_text, source)
        previous = self._active.version
        if not dry_run:
            self._active = loaded  # one reference assignment: atomic for every reader
            log.info("policy %s installed from %s (was %s)", loaded.version, source, previous)
        return loaded, previous

    async def apply_async(
        self, yaml_text: str, *, dry_run: bool = False, source: str = "api"
    ) -> tuple[LoadedPolicy, str]:
        """`apply` off the event loop (building guards may import validators or load weights)."""
        async with self._lock:
            return await asyncio.to_thread(self.apply, yaml_text, dry_run=dry_run, source=source)

    def watch(self, path: str | Path, interval_s: float = 1.0) -> asyncio.Task[None]:
        """Poll `path`'s mtime; a changed file is applied, a broken one logged and ignored.

        Broken includes an empty file (what a non-atomic save leaves for a moment; a policy
        without guards says `guards: []`) and one that is not UTF-8. Nothing a file holds
        stops the watching.
        """
        if self._watch_task is None or self._watch_task.done():
            self._watch_task = asyncio.create_task(
                self._watch(Path(path), interval_s), name="policy-watch"
            )
        return self._watch_task

    async def stop_watching(self) -> None:
        if self._watch_task is not None:
            self._watch_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch_task
            self._watch_task = None

    async def _watch(self, path: Path, interval_s: float) -> None:
        last = _mtime(path)
        while True:
            await asyncio.sleep(interval_s)
            current = _mtime(path)
            if current == last:
                continue
            last = current
            try:
                text = await asyncio.to_thread(path.read_text, encoding="utf-8")
                if not text.strip():
                    raise InvalidPolicy.at(str(path), None, "", "the file is empty")
                await self.apply_async(text, source=str(path))
            except InvalidPolicy as err:
                log.error("policy file change rejected, keeping %s: %s", self.version, err.message)
            except (OSError, UnicodeDecodeError) as err:
                log.error("policy file unreadable, keeping %s: %s", self.version, err)
            except Exception:  # a bug must not end the watching: the next change still counts
                log.exception("policy file change failed, keeping %s", self.version)


def _mtime(path: Path) -> float | None:
    try:
        return path.stat().st_mtime_ns / 1e9
    except OSError:
        return None
