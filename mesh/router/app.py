"""Run a router in the current event loop: routing table, guards, servicers, graceful stop."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from typing import TYPE_CHECKING, Any

import grpc

from guards.audit import AuditLog
from guards.policy_store import PolicyStore
from mesh.config import ConfigError, RouterConfig, is_loopback
from mesh.contract.serving import BoundServer, bound_address, create_server
from mesh.contract.tls import ChannelCredentialsSource
from mesh.router.accounting import Accounting
from mesh.router.admin_auth import policy_servicer
from mesh.router.auth import ApiKeyAuth
from mesh.router.breaker import STATE_NAMES, BreakerBoard
from mesh.router.budget import BudgetTracker
from mesh.router.cache import ResponseCache
from mesh.router.catalog import Catalog
from mesh.router.decision import routes_alike
from mesh.router.edge import EdgeInterceptor, EdgeLimits
from mesh.router.estimator_loader import EstimatorLoader, check_model_files
from mesh.router.exposure import refuse_plaintext_router
from mesh.router.ledger import Ledger
from mesh.router.pipeline.cache_lookup import CacheLookup
from mesh.router.pipeline.forward import Forwarder
from mesh.router.pipeline.input_guards import InputGuards
from mesh.router.pipeline.plan import Planner
from mesh.router.pipeline.run import Pipeline
from mesh.router.pipeline.settle import Settle
from mesh.router.policies import PolicySet
from mesh.router.registry import RegistryServicer, add_registry_service
from mesh.router.registry_auth import refuse_open_registration_off_loopback
from mesh.router.servicer import RouterServicer
from mesh.router.shared_state import SharedState
from mesh.router.upstream import UpstreamPool
from mesh.telemetry.setup import Telemetry
from mesh.v1 import (
    inference_pb2,
    inference_pb2_grpc,
    policy_pb2,
    policy_pb2_grpc,
    registry_pb2,
)

if TYPE_CHECKING:
    from mesh.embeddings.batching import Embedder
    from mesh.router.http import HttpFront
    from mesh.router.tier_estimator import TierEstimator

log = logging.getLogger(__name__)
INFERENCE_SERVICE = inference_pb2.DESCRIPTOR.services_by_name["InferenceService"].full_name
POLICY_SERVICE = policy_pb2.DESCRIPTOR.services_by_name["PolicyService"].full_name
REGISTRY_SERVICE = registry_pb2.DESCRIPTOR.services_by_name["RegistryService"].full_name
_BREAKER_METRIC = {"closed": "closed", "open": "open", "half-open": "half_open"}


class RouterRuntime:
    """The router front node: auth, then guards, then routing; telemetry around all of it."""

    def __init__(
        self,
        config: RouterConfig,
        *,
        router_id: str = "router",
        telemetry: Telemetry | None = None,
        policy_store: PolicyStore | None = None,
    ) -> None:
        """`policy_store`: a store built by the caller (an embedding program, a test's custom
        guards) instead of the one `config.guards.policy_file` names; ignored without guards."""
        self.config = config
        self.telemetry = telemetry
        self.catalog = Catalog(
            ttl_s=config.registry.ttl_s, heartbeat_interval_s=config.registry.heartbeat_interval_s
        )
        # No tracing interceptor on node channels: each attempt is one CLIENT span of the
        # forward stage, which also propagates its context (mesh/router/pipeline/forward.py).
        self.pool = UpstreamPool(
            self.catalog,
            probe_interval_s=config.health_interval_s,
            probe_timeout_s=config.health_timeout_s,
            max_message_bytes=config.max_message_bytes,
            credentials=(
                ChannelCredentialsSource(config.upstream_tls, "router channels to nodes")
                if config.upstream_tls is not None
                else None
            ),
        )
        for upstream in config.upstreams:
            self.pool.add_static(upstream.id, upstream.address)
        self.breakers = BreakerBoard(config.breaker)
        self.policies = PolicySet(config.routing)
        # Built when the catalogue first lets an estimate matter (estimator_loader.py says why).
        self.estimates = EstimatorLoader(lambda: _build_estimator(config))
        self.planner = Planner(self.catalog, self.breakers, self.policies, self.estimates)
        self.cache: ResponseCache | None = None
        self._cache_embedder = (
            _cache_embedder(config) if config.cache.enabled and config.cache.semantic else None
        )
        if config.cache.enabled:
            self.cache = ResponseCache(config.cache, embedder=self._cache_embedder)
        self.budgets = BudgetTracker(config.budgets)
        self.ledger = (
            Ledger(config.ledger_url(), config.ledger.flush_interval_s)
            if config.ledger.enabled
            else None
        )
        # Budgets and registered nodes shared with other replicas when the ledger is PostgreSQL.
        self.shared = SharedState.for_router(config, self.catalog)
        self.accounting = Accounting(
            self.budgets,
            config.routing.baseline,
            self.ledger,
            shared=self.shared.budgets if self.shared else None,
        )
        self.auth = ApiKeyAuth(config.auth.api_keys, anonymous_admin=is_loopback(config.listen))
        guards = config.guards
        self.policy_store: PolicyStore | None = None
        self.audit: AuditLog | None = None
        if guards.enabled:
            self.policy_store = policy_store or PolicyStore.from_settings(
                guards, tracer=telemetry.tracer if telemetry else None
            )
            self.audit = AuditLog.from_settings(guards)
        metrics = telemetry.metrics if telemetry else None
        tracer = telemetry.tracer if telemetry else None
        self.settle = Settle(self.accounting, self.cache, metrics)
        self.pipeline = Pipeline(
            input_guards=InputGuards(self.policy_store, self.audit, metrics),
            planner=self.planner,
            cache=CacheLookup(self.cache, metrics),
            forwarder=Forwarder(
                self.pool,
                self.breakers,
                self.accounting,
                first_token_timeout_s=config.first_token_timeout_s,
                idle_timeout_s=config.idle_timeout_s,
                tracer=tracer,
            ),
            settle=self.settle,
            accounting=self.accounting,
            tracer=tracer,
        )
        self.servicer = RouterServicer(self.pipeline, self.planner, router_id=router_id)
        self.http: HttpFront | None = None
        if config.http.listen is not None:
            # Imported only when configured: Starlette, uvicorn and the ASGI instrumentation
            # cost a router without an HTTP front nothing.
            from mesh.router.http import HttpFront

            self.http = HttpFront(
                pipeline=self.pipeline,
                planner=self.planner,
                auth=self.auth,
                limits=EdgeLimits.of(config),
                settings=config.http,
                telemetry=telemetry,
            )
        self.pool.after_probe.append(self._after_probe)
        self._bound: BoundServer | None = None
        self.address = ""

    def add_upstream(self, node_id: str, address: str) -> None:
        """A static node (config or embedded mesh); probed before the server starts."""
        self.pool.add_static(node_id, address)

    def _after_probe(self, catalog: Catalog) -> None:
        """Outlier ejection and node gauges, refreshed with every probe round."""
        entries = catalog.entries()
        ejected = self.breakers.update_latencies(
            {e.node_id: e.load.ewma_ttft_ms for e in entries if e.healthy}
        )
        for node_id in sorted(ejected):
            log.warning("node %s ejected as a latency outlier", node_id)
        metrics = self.telemetry.metrics if self.telemetry else None
        if metrics is None:
            return
        for entry in entries:
            state = STATE_NAMES.get(self.breakers.state(entry.node_id), "closed")  # type: ignore[call-overload]
            metrics.set_breaker_state(entry.node_id, _BREAKER_METRIC[state])  # type: ignore[arg-type]
            metrics.set_node_load(
                entry.node_id,
                running=entry.load.running,
                waiting=entry.load.waiting,
                kv_cache_usage=entry.load.kv_cache_usage,
            )

    def _registrations(self) -> list[tuple[Any, Any, str]]:
        policy: Any = policy_pb2_grpc.PolicyServiceServicer()  # UNIMPLEMENTED without guards
        if self.policy_store is not None:
            policy = policy_servicer(self.config, self.auth, self.policy_store, self.audit)
        registry = RegistryServicer.from_settings(
            self.catalog,
            self.config.registry,
            breaker_state=self.breakers.state,
            shared=self.shared.registry if self.shared else None,
        )
        return [
            (
                inference_pb2_grpc.add_InferenceServiceServicer_to_server,
                self.servicer,
                INFERENCE_SERVICE,
            ),
            (policy_pb2_grpc.add_PolicyServiceServicer_to_server, policy, POLICY_SERVICE),
            (add_registry_service, registry, REGISTRY_SERVICE),
        ]

    async def _seed_budgets(self) -> None:
        """Spend already in the ledger this day and month counts against budgets after a restart
        (shared budgets keep their tally in the database instead)."""
        if self.ledger is None or not self.budgets.settings.tenants or self.accounting.shared:
            return
        now = dt.datetime.now(dt.UTC)
        day = now.replace(hour=0, minute=0, second=0, microsecond=0)
        month = day.replace(day=1)
        for tenant in await self.ledger.tenants():
            self.budgets.seed(
                tenant,
                await self.ledger.spent_since(tenant, day),
                await self.ledger.spent_since(tenant, month),
            )

    @property
    def estimator(self) -> TierEstimator | None:
        """The tier estimator once built (None until the catalogue first needs it)."""
        return self.estimates.loaded

    def _tiers_changed(self, loop: asyncio.AbstractEventLoop, tiers: frozenset[int]) -> None:
        """The catalogue's cards changed (any thread): build the estimator in the background
        once its tiers can be told apart, before a request has to wait for it."""
        if self.estimates.loaded is not None:
            self.catalog.watch_tiers(None)
        elif not routes_alike(tiers, 0):
            loop.call_soon_threadsafe(self.estimates.warm_soon)

    async def start(self, listen: str | None = None) -> str:
        listen = listen or self.config.listen
        refuse_open_registration_off_loopback(listen, self.config.registry)
        refuse_plaintext_router(self.config, listen)
        if self.pool.credentials is not None:
            self.pool.credentials.load()  # a broken upstream_tls file fails the start here
        if self.audit is not None:
            await self.audit.start()
        if self.ledger is not None:
            await self.ledger.start()
            await self._seed_budgets()
        if self.shared is not None:
            await self.shared.start()
        if (
            self.policy_store is not None
            and self.config.guards.policy_file
            and self.config.guards.watch
        ):
            self.policy_store.watch(self.config.guards.policy_file, audit=self.audit)
        # The embedding models load once per process; do it now, not on the first request.
        if self._cache_embedder is not None:
            await asyncio.to_thread(self._cache_embedder.embed, ["warm up"])
        loop = asyncio.get_running_loop()
        self.catalog.watch_tiers(lambda tiers: self._tiers_changed(loop, tiers))
        await self.pool.probe_all()
        if not routes_alike(self.catalog.tiers(), 0):
            try:
                await asyncio.to_thread(self.estimates.build)
            except (OSError, ValueError) as exc:  # a model file that is there but unreadable
                raise ConfigError(f"routing.estimator: {exc}") from exc
        else:
            check_model_files(self.config.routing.estimator)
            log.info("tier estimator not loaded: every tier routes alike in this catalogue")
        self.pool.start()
        interceptors: list[grpc.aio.ServerInterceptor] = list(
            self.telemetry.server_interceptors() if self.telemetry else []
        )
        interceptors.append(EdgeInterceptor(self.auth, EdgeLimits.of(self.config)))
        self._bound = create_server(
            listen,
            self._registrations(),
            max_message_bytes=self.config.max_message_bytes,
            interceptors=interceptors,
            tls=self.config.tls,
            what="router",
        )
        await self._bound.server.start()
        self.address = bound_address(listen, self._bound.port)
        if self.http is not None:
            try:
                http_address = await self.http.start()
            except BaseException:
                await self._bound.stop(0)
                self._bound = None
                raise
            log.info("router HTTP front (OpenAI-compatible) on %s", http_address)
        await self._bound.set_serving(True)
        log.info("router serving on %s with %d node(s)", self.address, len(self.catalog))
        return self.address

    async def stop(self, grace_s: float = 5.0) -> None:
        # Both doors stop taking requests and give in-flight ones the same grace, together.
        await asyncio.gather(
            *([self.http.stop(grace_s)] if self.http is not None else []),
            *([self._bound.stop(grace_s)] if self._bound is not None else []),
        )
        await self.settle.drain()
        if self.shared is not None:
            await self.shared.close()
        await self.pool.close()
        if self.policy_store is not None:
            await self.policy_store.stop_watching()
            # Validator sandbox workers (guards.validator_sandbox) go now, not at interpreter exit.
            await asyncio.to_thread(self.policy_store.close)
        if self.audit is not None:
            await self.audit.close()
        if self.ledger is not None:
            await self.ledger.close()


def _build_estimator(config: RouterConfig) -> TierEstimator:
    """The tier estimator `config` asks for (imports numpy and the embedders: call when needed)."""
    from mesh.embeddings.batching import shared_embedder
    from mesh.embeddings.static import shared_static_embedder
    from mesh.router.tier_estimator import TierEstimator

    return TierEstimator(
        config.routing.estimator,
        embedder=shared_embedder(config.embeddings.precision),
        fast_embedder=shared_static_embedder("mean+max") if config.embeddings.static else None,
    )


def _cache_embedder(config: RouterConfig) -> Embedder:
    """The semantic tier's embedder: the static table by default, MiniLM when it is off."""
    if config.embeddings.static:
        from mesh.embeddings.static import shared_static_embedder

        return shared_static_embedder()
    from mesh.embeddings.batching import shared_embedder

    return shared_embedder(config.embeddings.precision)
