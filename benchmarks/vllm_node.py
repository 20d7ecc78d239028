"""Inference node overhead: the node's gRPC API vs bare vLLM AsyncLLM, same engine, same run.

One engine serves both paths (a second engine would double the start-up and differ in warm
state): "bare" calls `AsyncLLM.generate` directly (chat template + tokenisation included, as
any caller must do); "node" goes through `mesh.v1.InferenceService.GenerateStream` on loopback,
its client in the same process and event loop (so client-side gRPC work counts against the
node: an upper bound on its overhead). The prefix cache is reset before every measured pass
so neither path profits from the other's prompts; passes alternate to spread machine noise.

Goal (issue 3): node tokens/s >= 0.95 x bare; node time to first token <= 1.1 x bare.
Run: `python -m benchmarks.vllm_node` (bounded to a few minutes on 2 cores).
"""

from __future__ import annotations

import asyncio
import statistics
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import grpc.aio

from benchmarks.harness import versions
from benchmarks.stats import Row, suite_arguments, write_rows
from mesh.config import NodeConfig, VllmEngineConfig
from mesh.v1 import inference_pb2, inference_pb2_grpc, types_pb2
from nodes.engines.base import Sampling
from nodes.engines.vllm import VllmBackend, sampling_params
from nodes.runtime import NodeRuntime

TOPICS = [
    "cats", "the sea", "bread", "winter", "trains", "music", "gardens", "the moon",
    "rivers", "coffee", "mountains", "bicycles", "libraries", "rain", "bees", "clocks",
]  # fmt: skip
PROMPTS = [f"Write a short paragraph about {t}." for t in TOPICS]
MAX_TOKENS = 32
TTFT_MAX_TOKENS = 4  # the first token is what counts; short answers keep the run bounded
ROUNDS = 2
TTFT_SAMPLES = 4

CONFIG = NodeConfig(
    id="bench-vllm",
    engine="vllm",
    max_inflight=64,
    vllm=VllmEngineConfig(max_model_len=1024, kv_cache_gib=1.0, max_num_seqs=len(PROMPTS)),
)


@dataclass
class Pass:
    """One measured pass: output tokens, wall seconds, and each request's first-token delay."""

    tokens: int
    seconds: float
    ttfts: list[float]

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds


# --- the two paths ------------------------------------------------------------------------
async def bare_one(
    backend: VllmBackend, prompt: str, max_tokens: int = MAX_TOKENS
) -> tuple[int, float]:
    """One request straight on AsyncLLM: (output tokens, seconds to first token)."""
    from vllm.inputs import TokensPrompt

    start = time.perf_counter()
    engine = backend.engine
    chat = [{"role": "user", "content": prompt}]
    encoded = engine.get_tokenizer().apply_chat_template(
        chat, add_generation_prompt=True, tokenize=True, return_dict=True
    )
    (rendered,) = engine.renderer.render_cmpl(
        [TokensPrompt(prompt_token_ids=list(encoded["input_ids"]))]
    )
    params = sampling_params(Sampling(max_tokens=max_tokens, temperature=0.0))
    tokens, ttft = 0, 0.0
    async for out in engine.generate(rendered, params, uuid.uuid4().hex):
        if out.outputs[0].text and not ttft:
            ttft = time.perf_counter() - start
        tokens += len(out.outputs[0].token_ids)
    return tokens, ttft


async def node_one(
    stub: inference_pb2_grpc.InferenceServiceStub, prompt: str, max_tokens: int = MAX_TOKENS
) -> tuple[int, float]:
    """The same request through the node's GenerateStream."""
    start = time.perf_counter()
    request = inference_pb2.GenerateStreamRequest(
        messages=[types_pb2.ChatMessage(role=types_pb2.ROLE_USER, content=prompt)],
        sampling=types_pb2.SamplingParams(max_tokens=max_tokens, temperature=0.0),
    )
    tokens, ttft = 0, 0.0
    async for event in stub.GenerateStream(request, timeout=300):
        if event.HasField("delta"):
            if event.delta.text and not ttft:
                ttft = time.perf_counter() - start
        else:
            tokens = event.summary.usage.output_tokens
    return tokens, ttft


One = Callable[..., Any]


async def batch_pass(one: One, backend: VllmBackend) -> Pass:
    """All prompts at once: throughput of the batched engine."""
    await backend.engine.reset_prefix_cache()
    start = time.perf_counter()
    results = await asyncio.gather(*(one(p) for p in PROMPTS))
    seconds = time.perf_counter() - start
    return Pass(sum(t for t, _ in results), seconds, [f for _, f in results])


async def ttft_pass(one: One, backend: VllmBackend) -> list[float]:
    """One request at a time: time to first token without queueing."""
    ttfts = []
    for prompt in PROMPTS[:TTFT_SAMPLES]:
        await backend.engine.reset_prefix_cache()
        ttfts.append((await one(prompt, TTFT_MAX_TOKENS))[1])
    return ttfts


# --- the run --------------------------------------------------------------------------------
async def measure(report: Callable[[str], None]) -> dict[str, float]:
    runtime = NodeRuntime(CONFIG)
    started = time.perf_counter()
    await runtime.start()
    report(f"engine + node started in {time.perf_counter() - started:.1f} s")
    backend = runtime.backend
    assert isinstance(backend, VllmBackend)
    channel = grpc.aio.insecure_channel(runtime.address)
    stub = inference_pb2_grpc.InferenceServiceStub(channel)
    paths: dict[str, One] = {
        "bare": lambda p, n=MAX_TOKENS: bare_one(backend, p, n),
        "node": lambda p, n=MAX_TOKENS: node_one(stub, p, n),
    }
    try:
        for one in paths.values():  # warm-up: first-request costs are not overhead
            await one(PROMPTS[0])
        # Same prompts, same greedy decoding: both paths must produce the same token counts.
        batches: dict[str, list[Pass]] = {name: [] for name in paths}
        ttfts: dict[str, list[float]] = {name: [] for name in paths}
        for _ in range(ROUNDS):
            for name, one in paths.items():
                batches[name].append(await batch_pass(one, backend))
                ttfts[name] += await ttft_pass(one, backend)
    finally:
        await channel.close()
        await runtime.stop(grace_s=1.0)

    figures: dict[str, float] = {}
    for name in paths:
        best = max(batches[name], key=lambda p: p.tokens_per_s)
        figures[f"{name}_tokens"] = best.tokens
        figures[f"{name}_tokens_per_s"] = best.tokens_per_s
        figures[f"{name}_batch_ttft_p50_s"] = statistics.median(best.ttfts)
        figures[f"{name}_ttft_p50_s"] = statistics.median(ttfts[name])
        report(
            f"{name:>4}: {len(PROMPTS)} concurrent x {MAX_TOKENS} tokens: "
            f"{best.tokens} tokens in {best.seconds:.2f} s = {best.tokens_per_s:.1f} tok/s "
            f"(passes: {', '.join(f'{p.tokens_per_s:.1f}' for p in batches[name])}); "
            f"TTFT in batch p50 {figures[f'{name}_batch_ttft_p50_s'] * 1000:.0f} ms; "
            f"single-request TTFT p50 {figures[f'{name}_ttft_p50_s'] * 1000:.0f} ms "
            f"({', '.join(f'{t * 1000:.0f}' for t in ttfts[name])} ms)"
        )
    figures["tokens_per_s_ratio"] = figures["node_tokens_per_s"] / figures["bare_tokens_per_s"]
    figures["ttft_ratio"] = figures["node_ttft_p50_s"] / figures["bare_ttft_p50_s"]
    report(
        f"ratio node/bare: tokens/s {figures['tokens_per_s_ratio']:.3f} (goal >= 0.95), "
        f"TTFT {figures['ttft_ratio']:.3f} (goal <= 1.10)"
    )
    if figures["node_tokens"] != figures["bare_tokens"]:
        report("note: the paths generated different token counts; the figures are not comparable")
    return figures


def run(report: Callable[[str], None] = print) -> dict[str, float]:
    """Measure and report; returns the raw figures and ratios (for `mesh bench`)."""
    return asyncio.run(measure(report))


def main() -> None:
    args = suite_arguments(__doc__).parse_args()  # already bounded: --quick changes nothing
    print(versions())
    figures = run()
    rows = [
        Row(
            "vLLM node tokens/s vs bare AsyncLLM (BENCH)",
            f"{figures['node_tokens_per_s']:.1f} / {figures['bare_tokens_per_s']:.1f} tok/s",
            figures["tokens_per_s_ratio"],
            0.95,
            ">=",
        ),
        Row(
            "vLLM node TTFT vs bare AsyncLLM (BENCH)",
            f"{1e3 * figures['node_ttft_p50_s']:.0f} / {1e3 * figures['bare_ttft_p50_s']:.0f} ms",
            figures["ttft_ratio"],
            1.10,
            "<=",
        ),
    ]
    write_rows(rows, args.rows)


if __name__ == "__main__":  # vLLM spawns its engine processes: the guard is required
    main()
