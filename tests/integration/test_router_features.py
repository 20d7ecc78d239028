"""The router's product features over real gRPC servers: tiers, registry, auth, budgets, cache,
ledger, breakers, first-token timeouts, and a node killed under load.

Nodes run FakeEngine (a deterministic test engine, named as such) so the mesh's own logic is what
is tested; the tier estimator and the semantic cache use the real MiniLM model and the static
table distilled from it.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
import grpc.aio
import pytest

from mesh.config import (
    ApiKeyConfig,
    AuthSettings,
    BreakerSettings,
    BudgetSettings,
    CacheSettings,
    GuardSettings,
    LedgerSettings,
    NodeConfig,
    RegistrySettings,
    RouterConfig,
    TenantBudget,
    Tier,
)
from mesh.contract.status import error_details
from mesh.router.app import RouterRuntime
from mesh.router.auth import hash_api_key
from mesh.v1 import inference_pb2, inference_pb2_grpc, registry_pb2, registry_pb2_grpc, types_pb2
from nodes.engines.fake import FakeEngine
from nodes.runtime import NodeRuntime
from tests.helpers import request, stream_request, wait_until

EASY = "What is the capital of France?"
# A proof: frontier by the routing sets' rubric however short. (A thread-safe LRU cache with
# TTL and concurrency tests, this test's earlier prompt, is estimated medium by the model
# shipped 2026-12-05: hard code beyond HumanEval is thin in its training data, tier_model.md.)
HARD = "Prove that every finite group of prime order is cyclic."


@dataclass
class Mesh:
    nodes: dict[str, NodeRuntime]
    router: RouterRuntime
    channel: grpc.aio.Channel

    @property
    def stub(self) -> inference_pb2_grpc.InferenceServiceStub:
        return inference_pb2_grpc.InferenceServiceStub(self.channel)

    @property
    def registry(self) -> registry_pb2_grpc.RegistryServiceStub:
        return registry_pb2_grpc.RegistryServiceStub(self.channel)

    def engine(self, node_id: str) -> FakeEngine:
        backend = self.nodes[node_id].backend
        assert isinstance(backend, FakeEngine)
        return backend


def fake_node_config(node_id: str, **card: Any) -> NodeConfig:
    card.setdefault("model", "fake-model")
    card.setdefault("input_price_per_mtok", 0.1)
    card.setdefault("output_price_per_mtok", 0.2)
    return NodeConfig(id=node_id, engine="fake", **card)


@contextlib.asynccontextmanager
async def mesh(
    nodes: Sequence[NodeConfig], *, static: bool = True, **router: Any
) -> AsyncIterator[Mesh]:
    router.setdefault("guards", GuardSettings(enabled=False))
    router.setdefault("cache", CacheSettings(enabled=False))
    ledger_dir = tempfile.mkdtemp(prefix="mesh-ledger-")  # one ledger per test
    router.setdefault("ledger", LedgerSettings(url=f"sqlite+aiosqlite:///{ledger_dir}/ledger.db"))
    runtimes = {}
    for config in nodes:
        runtimes[config.id] = NodeRuntime(config, FakeEngine(model_id=config.model))
        await runtimes[config.id].start()
    runtime = RouterRuntime(RouterConfig(listen="127.0.0.1:0", health_interval_s=0.2, **router))
    if static:
        for node_id, node in runtimes.items():
            runtime.add_upstream(node_id, node.address)
    await runtime.start()
    try:
        async with grpc.aio.insecure_channel(runtime.address) as channel:
            yield Mesh(runtimes, runtime, channel)
    finally:
        await runtime.stop(0)
        await asyncio.gather(*(n.stop(0) for n in runtimes.values()), return_exceptions=True)


async def rpc_error(call: Any) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call
    return info.value


async def test_cheapest_capable_sends_each_prompt_to_the_tier_it_needs() -> None:
    small = fake_node_config("small-node", model="smol", tier=Tier.SMALL)
    frontier = fake_node_config(
        "big-node",
        model="big",
        tier=Tier.FRONTIER,
        input_price_per_mtok=2.5,
        output_price_per_mtok=10.0,
    )
    async with mesh([small, frontier]) as m:
        easy = await m.stub.Generate(request(EASY), timeout=30)
        hard = await m.stub.Generate(request(HARD), timeout=30)
    assert easy.route.node_id == "small-node" and easy.route.policy == "cheapest"
    assert easy.route.reason.startswith("tier small: P(above small)")
    assert "cheapest healthy: smol @ $0.1/M" in easy.route.reason
    assert hard.route.node_id == "big-node" and hard.route.tier == types_pb2.MODEL_TIER_FRONTIER
    assert hard.route.reason.startswith("tier frontier: P(frontier)")
    lost = {c.node_id: c.rejected_reason for c in hard.route.candidates if not c.chosen}
    assert lost == {"small-node": "tier small below needed frontier"}
    # money on every response: real cost, the estimate, and what the baseline model would cost
    assert 0 < easy.usage.cost_usd <= easy.route.estimated_cost_usd
    assert easy.route.baseline_cost_usd > easy.usage.cost_usd


async def test_registered_node_is_routed_to_and_leaves_when_heartbeats_stop() -> None:
    node = fake_node_config("reg-node")
    # Open registration: this test registers by hand on loopback, without a token.
    registry = RegistrySettings(mode="open", heartbeat_interval_s=0.2, ttl_s=0.6)
    async with mesh([node], static=False, registry=registry) as m:
        async with grpc.aio.insecure_channel(m.nodes["reg-node"].address) as direct:
            node_stub = inference_pb2_grpc.InferenceServiceStub(direct)
            cards = (
                await node_stub.ListModels(inference_pb2.ListModelsRequest(), timeout=5)
            ).models
        reply = await m.registry.Register(
            registry_pb2.RegisterRequest(
                node_id="reg-node", address=m.nodes["reg-node"].address, models=cards
            ),
            timeout=5,
        )
        assert reply.ttl.ToTimedelta().total_seconds() == pytest.approx(0.6)
        routed = await m.stub.Generate(request(EASY), timeout=10)
        assert routed.route.node_id == "reg-node"
        listed = await m.registry.ListNodes(registry_pb2.ListNodesRequest(), timeout=5)
        assert [(n.node_id, n.source) for n in listed.nodes] == [
            ("reg-node", registry_pb2.NODE_SOURCE_REGISTERED)
        ]
        # no heartbeats: gone after the TTL, and requests get a precise UNAVAILABLE
        assert await wait_until(lambda: len(m.router.catalog) == 0, timeout_s=5)
        err = await rpc_error(m.stub.Generate(request(EASY), timeout=5))
        assert err.code() == grpc.StatusCode.UNAVAILABLE
        assert error_details(err).reason == "UPSTREAM_UNAVAILABLE"
        # a heartbeat from an expired node says "register again"
        beat = await m.registry.Heartbeat(
            registry_pb2.HeartbeatRequest(node_id="reg-node"), timeout=5
        )
        assert not beat.known


async def test_list_nodes_pages_through_static_nodes() -> None:
    nodes = [fake_node_config(f"n{i}") for i in range(3)]
    async with mesh(nodes) as m:
        first = await m.registry.ListNodes(registry_pb2.ListNodesRequest(page_size=2), timeout=5)
        assert [n.node_id for n in first.nodes] == ["n0", "n1"] and first.next_page_token
        second = await m.registry.ListNodes(
            registry_pb2.ListNodesRequest(page_size=2, page_token=first.next_page_token),
            timeout=5,
        )
        assert [n.node_id for n in second.nodes] == ["n2"] and not second.next_page_token
        assert all(n.source == registry_pb2.NODE_SOURCE_STATIC and n.healthy for n in first.nodes)
        err = await rpc_error(
            m.registry.ListNodes(registry_pb2.ListNodesRequest(page_token="garbage"), timeout=5)
        )
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_api_keys_map_to_tenants_and_unknown_keys_are_unauthenticated() -> None:
    auth = AuthSettings(
        api_keys=[ApiKeyConfig(name="acme-ci", sha256=hash_api_key("acme-secret"), tenant="acme")]
    )
    async with mesh([fake_node_config("a")], auth=auth) as m:
        for metadata in (None, (("x-api-key", "wrong-secret"),)):
            err = await rpc_error(m.stub.Generate(request(EASY), metadata=metadata, timeout=5))
            assert err.code() == grpc.StatusCode.UNAUTHENTICATED
            assert error_details(err).reason == "UNAUTHENTICATED"
            assert "wrong-secret" not in (err.details() or "")
        with pytest.raises(grpc.aio.AioRpcError) as info:
            async for _ in m.stub.GenerateStream(stream_request(EASY), timeout=5):
                pass
        assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
        reply = await m.stub.Generate(
            request(EASY), metadata=(("authorization", "Bearer acme-secret"),), timeout=5
        )
        assert reply.text and m.engine("a").completed == 1  # only the keyed call reached it
        assert m.router.ledger is not None
        await m.router.ledger.flush()
        by_tenant = await m.router.ledger.summary(by="tenant")
        assert [(row.key, row.requests) for row in by_tenant] == [("acme", 1)]


async def test_budgets_refuse_before_calling_and_never_overspend_under_concurrency() -> None:
    pricey = fake_node_config("a", input_price_per_mtok=100.0, output_price_per_mtok=1000.0)
    # Estimate per request: ~12 prompt tokens at $100/M + 16 output tokens at $1000/M ~ $0.0172.
    limit = 0.05
    budgets = BudgetSettings(tenants={"*": TenantBudget(daily_usd=limit)})
    async with mesh([pricey], budgets=budgets) as m:
        m.engine("a").script.delay_between_s = 0.01  # keep requests in flight together
        calls = [m.stub.Generate(request(f"{EASY} ({i})"), timeout=30) for i in range(12)]
        results = await asyncio.gather(*calls, return_exceptions=True)
        answered = [r for r in results if not isinstance(r, BaseException)]
        refused = [r for r in results if isinstance(r, grpc.aio.AioRpcError)]
        assert len(answered) + len(refused) == 12 and answered and refused
        spent = sum(r.usage.cost_usd for r in answered)
        assert spent <= limit
        details = error_details(refused[0])
        assert refused[0].code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert details.reason == "BUDGET_EXCEEDED"
        assert details.metadata["budget"] == "daily"
        assert float(details.metadata["limit_usd"]) == pytest.approx(limit)
        assert "spent_usd" in details.metadata
        assert m.engine("a").completed == len(answered)  # refused calls never reached the node
        figures = m.router.budgets.spent("default")
        assert figures["day_spent_usd"] == pytest.approx(spent) and figures["reserved_usd"] == 0


async def test_cache_serves_repeats_unary_and_streamed_and_respects_scope() -> None:
    cache = CacheSettings(enabled=True)
    async with mesh([fake_node_config("a")], cache=cache) as m:
        first = await m.stub.Generate(request(EASY), timeout=10)
        again = await m.stub.Generate(request("  What is the capital   of France? "), timeout=10)
        assert not first.route.cache_hit and again.route.cache_hit
        assert again.text == first.text and again.usage.cost_usd == 0
        assert again.route.provider == "cache" and "cache hit (exact" in again.route.reason
        assert again.route.baseline_cost_usd > 0
        events = [e async for e in m.stub.GenerateStream(stream_request(EASY), timeout=10)]
        summary = events[-1].summary
        assert summary.route.cache_hit and "".join(e.delta.text for e in events[:-1]) == first.text
        assert m.engine("a").completed == 1
        # bypass, other sampling parameters, a different conversation: all reach the node
        bypass = request(EASY)
        bypass.routing.cache = types_pb2.CACHE_MODE_BYPASS
        warmer = request(EASY)
        warmer.sampling.temperature = 0.9
        follow_up = request(EASY)
        follow_up.messages.insert(
            0, types_pb2.ChatMessage(role=types_pb2.ROLE_USER, content="Be brief.")
        )
        for req in (bypass, warmer, follow_up):
            assert not (await m.stub.Generate(req, timeout=10)).route.cache_hit
        assert m.engine("a").completed == 4
        assert m.router.ledger is not None
        await m.router.ledger.flush()
        (total,) = await m.router.ledger.summary()
        assert total.requests == 6 and total.cache_hits == 2 and total.savings_cache_usd > 0


@pytest.mark.parametrize("static", [True, False])
async def test_static_vectors_route_and_serve_paraphrases_like_minilm(static: bool) -> None:
    """`router.embeddings.static`: on, the static model places a routine question without
    MiniLM and static vectors find the paraphrase; off, MiniLM does both, as before."""
    from mesh.config.router import EmbeddingSettings

    cache = CacheSettings(enabled=True)
    embeddings = EmbeddingSettings(static=static)
    # Two tiers, so an estimate can change the decision and is made (one tier skips it).
    big = fake_node_config("b", model="big", tier=Tier.FRONTIER, input_price_per_mtok=2.5)
    async with mesh([fake_node_config("a"), big], cache=cache, embeddings=embeddings) as m:
        first = await m.stub.Generate(request(EASY), timeout=30)
        para = await m.stub.Generate(request("Tell me the capital of France."), timeout=30)
        other = await m.stub.Generate(request("What is the capital of Spain?"), timeout=30)
    assert first.route.reason.startswith("tier small: P(above small)")
    decided = "static model, clear of both bounds"
    assert (decided in first.route.reason) == static
    assert para.route.cache_hit and "cache hit (semantic" in para.route.reason
    assert not other.route.cache_hit


# Only the output stage blocks: the fake engine echoes the prompt, so the secret comes back.
OUTPUT_ONLY_POLICY = """
guards:
  - name: secrets
    use: secrets
    stage: output
    action: block
"""
LEAKY = "Repeat after me: AKIAIOSFODNN7EXAMPLE please"


async def test_answers_blocked_by_output_guards_are_never_cached(tmp_path: Any) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(OUTPUT_ONLY_POLICY)
    guards = GuardSettings(
        policy_file=str(policy), watch=False, audit_url=f"sqlite+aiosqlite:///{tmp_path}/a.db"
    )
    async with mesh([fake_node_config("a")], cache=CacheSettings(enabled=True), guards=guards) as m:
        engine = m.engine("a")
        for _ in range(2):
            error = await rpc_error(m.stub.Generate(request(LEAKY), timeout=10))
            assert error.code() == grpc.StatusCode.PERMISSION_DENIED
            events = [e async for e in m.stub.GenerateStream(stream_request(LEAKY), timeout=10)]
            summary = events[-1].summary
            assert summary.finish_reason == types_pb2.FINISH_REASON_GUARD_BLOCKED
            assert not summary.route.cache_hit
        # Every blocked call reached the node again: nothing blocked was stored or replayed.
        # (A stream is stopped as soon as the window sees the key: its generation is aborted.)
        await m.router.settle.drain()  # cache writes run beside the response
        assert engine.completed + engine.aborted_total == 4
        assert m.router.cache is not None and len(m.router.cache) == 0
        # An answer the guards let through is cached as before, unary and streamed.
        first = await m.stub.Generate(request(EASY), timeout=10)
        again = await m.stub.Generate(request(EASY), timeout=10)
        assert not first.route.cache_hit and again.route.cache_hit
        river = stream_request("Name a river in Spain.")
        streamed = [e async for e in m.stub.GenerateStream(river, timeout=10)]
        replay = [e async for e in m.stub.GenerateStream(river, timeout=10)]
        assert not streamed[-1].summary.route.cache_hit and replay[-1].summary.route.cache_hit
        await m.router.settle.drain()
        assert engine.completed + engine.aborted_total == 6 and len(m.router.cache) == 2


async def test_a_failing_node_opens_its_breaker_and_list_nodes_shows_it() -> None:
    breaker = BreakerSettings(consecutive_failures=2, cooldown_s=60)
    nodes = [fake_node_config("a-node"), fake_node_config("b-node")]
    async with mesh(nodes, breaker=breaker) as m:
        m.engine("a-node").script.fail_before_first = True
        pinned = request(EASY)
        pinned.routing.model = "fake-model"  # equal load: a-node is tried first
        attempts = []
        for _ in range(4):
            reply = await m.stub.Generate(pinned, timeout=10)
            assert reply.route.node_id == "b-node"
            attempts.append(reply.route.attempts)
            # a probe would mark a-node healthy again; only the breaker keeps it out
            assert await wait_until(lambda: m.router.catalog.get("a-node").healthy, 5)  # type: ignore[union-attr]
        assert attempts == [2, 2, 1, 1]
        listed = await m.registry.ListNodes(registry_pb2.ListNodesRequest(), timeout=5)
        state = {n.node_id: (n.breaker_state, n.healthy) for n in listed.nodes}
        assert state == {
            "a-node": (registry_pb2.BREAKER_STATE_OPEN, False),
            "b-node": (registry_pb2.BREAKER_STATE_CLOSED, True),
        }


async def test_a_silent_node_is_skipped_after_the_first_token_timeout() -> None:
    nodes = [fake_node_config("a-node"), fake_node_config("b-node")]
    async with mesh(nodes, first_token_timeout_s=0.5) as m:
        m.engine("a-node").script.delay_before_first_s = 10
        pinned = stream_request(EASY)
        pinned.routing.model = "fake-model"
        events = [e async for e in m.stub.GenerateStream(pinned, timeout=10)]
        route = events[-1].summary.route
        assert route.node_id == "b-node" and route.attempts == 2
        reasons = {c.node_id: c.rejected_reason for c in route.candidates}
        assert reasons["a-node"] == "no first token within 0.5s"
        # the abandoned generation on the silent node was aborted, not left running
        assert await wait_until(lambda: m.engine("a-node").load().running == 0, 5)


async def test_killing_a_node_under_load_loses_no_request_that_had_not_started_streaming() -> None:
    # room for all 50 calls on the survivor: capacity refusals are another test's subject
    nodes = [fake_node_config(n, max_inflight=64) for n in ("a-node", "b-node")]
    async with mesh(nodes) as m:
        for node_id in nodes:
            m.engine(node_id.id).script.delay_before_first_s = 0.05
            m.engine(node_id.id).script.delay_between_s = 0.02
        received: dict[int, int] = {}

        async def stream(i: int) -> str:
            received[i] = 0
            req = stream_request(f"stream {i} words here")
            req.routing.model = "fake-model"
            async for _event in m.stub.GenerateStream(req, timeout=30):
                received[i] += 1
            return "ok"

        async def unary(i: int) -> str:
            req = request(f"unary {i} words here")
            req.routing.model = "fake-model"
            await m.stub.Generate(req, timeout=30)
            return "ok"

        calls = [asyncio.ensure_future(unary(i)) for i in range(30)]
        calls += [asyncio.ensure_future(stream(i)) for i in range(10)]
        await asyncio.sleep(0.12)
        await m.nodes["a-node"].stop(0)  # killed: in-flight calls on it are dropped
        more = [asyncio.ensure_future(unary(100 + i)) for i in range(10)]
        results = await asyncio.wait_for(asyncio.gather(*calls, *more, return_exceptions=True), 60)
        unary_results = results[:30] + results[40:]
        assert all(r == "ok" for r in unary_results), [r for r in unary_results if r != "ok"]
        for i, result in enumerate(results[30:40]):
            if result != "ok":  # only a stream that had already committed may end in error
                assert isinstance(result, grpc.aio.AioRpcError) and received[i] > 0, result
        assert m.engine("b-node").completed >= 30


async def test_a_cached_answer_is_not_replayed_once_a_stronger_tier_joins() -> None:
    """A proof answered by the only (small) model is cached; once a frontier node joins, the
    same proof is routed to it instead of replaying the small model's answer."""
    small = fake_node_config("small-node", model="smol", tier=Tier.SMALL)
    async with mesh([small], cache=CacheSettings(enabled=True)) as m:
        first = await m.stub.Generate(request(HARD), timeout=30)
        again = await m.stub.Generate(request(HARD), timeout=30)
        assert first.route.node_id == "small-node" and again.route.cache_hit
        big = NodeRuntime(
            fake_node_config("big-node", model="big", tier=Tier.FRONTIER),
            FakeEngine(model_id="big"),
        )
        await big.start()
        try:
            m.router.add_upstream("big-node", big.address)
            catalog = m.router.planner.catalog
            assert await wait_until(lambda: types_pb2.MODEL_TIER_FRONTIER in catalog.tiers(), 10)
            stronger = await m.stub.Generate(request(HARD), timeout=30)
        finally:
            await big.stop(0)
    assert not stronger.route.cache_hit and stronger.route.node_id == "big-node"
