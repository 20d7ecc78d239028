"""all-MiniLM-L6-v2 as an ONNX graph, built from its safetensors weights without torch.

The router must not import torch (it costs ~700 MB RSS), and a router-only install has none, so
the usual `torch.onnx.export` is not available where the conversion runs. The model is a plain
6-layer BERT encoder; this module writes that forward pass with the `onnx` helper API, using
standard operators only (opset 17: LayerNormalization, Erf-form GELU, MatMul attention), and
appends the sentence-transformers head (mean pooling over the attention mask, L2
normalisation), so the graph maps token ids straight to unit sentence vectors. ONNX Runtime's
graph optimiser fuses the standard pattern at session start (GELU, bias adds, attention).

`token_type_ids` is always zero for one sentence, so its embedding row is folded into the
position table and the graph takes only `input_ids` and `attention_mask`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

OPSET = 17  # first opset with LayerNormalization
INPUT_IDS = "input_ids"
ATTENTION_MASK = "attention_mask"
OUTPUT = "sentence_embedding"

Weights = Mapping[str, npt.NDArray[Any]]


@dataclass(frozen=True)
class BertShape:
    """The few config.json numbers the graph needs."""

    hidden: int
    heads: int
    layers: int
    layer_norm_eps: float

    @classmethod
    def from_config(cls, config_path: Path) -> BertShape:
        config = json.loads(config_path.read_text())
        if config.get("model_type") != "bert" or config.get("hidden_act") != "gelu":
            raise ValueError(f"{config_path}: not a BERT encoder with erf GELU")
        return cls(
            hidden=int(config["hidden_size"]),
            heads=int(config["num_attention_heads"]),
            layers=int(config["num_hidden_layers"]),
            layer_norm_eps=float(config["layer_norm_eps"]),
        )


class _Graph:
    """Accumulates nodes and initialisers with unique names."""

    def __init__(self) -> None:
        self.nodes: list[Any] = []
        self.initializers: list[Any] = []
        self._count = 0

    def name(self, hint: str) -> str:
        self._count += 1
        return f"{hint}_{self._count}"

    def const(self, hint: str, value: npt.NDArray[Any]) -> str:
        from onnx import numpy_helper

        name = self.name(hint)
        self.initializers.append(numpy_helper.from_array(np.ascontiguousarray(value), name))
        return name

    def scalar(self, hint: str, value: float) -> str:
        return self.const(hint, np.array(value, np.float32))

    def ints(self, hint: str, *values: int) -> str:
        return self.const(hint, np.array(values, np.int64))

    def op(self, op_type: str, inputs: list[str], hint: str, **attrs: Any) -> str:
        from onnx import helper

        out = self.name(hint)
        self.nodes.append(helper.make_node(op_type, inputs, [out], name=out, **attrs))
        return out


def _linear(g: _Graph, x: str, w: Weights, prefix: str) -> str:
    """x @ W^T + b, with W stored transposed once so the graph needs no Transpose."""
    weight = g.const(prefix + ".wT", np.asarray(w[prefix + ".weight"], np.float32).T)
    bias = g.const(prefix + ".b", np.asarray(w[prefix + ".bias"], np.float32))
    return g.op("Add", [g.op("MatMul", [x, weight], prefix), bias], prefix + ".bias")


def _layer_norm(g: _Graph, x: str, w: Weights, prefix: str, eps: float) -> str:
    scale = g.const(prefix + ".g", np.asarray(w[prefix + ".weight"], np.float32))
    bias = g.const(prefix + ".b", np.asarray(w[prefix + ".bias"], np.float32))
    return g.op("LayerNormalization", [x, scale, bias], prefix, axis=-1, epsilon=eps)


def _gelu(g: _Graph, x: str) -> str:
    """0.5 * x * (1 + erf(x / sqrt 2)), the exact GELU BERT was trained with."""
    scaled = g.op("Div", [x, g.scalar("sqrt2", math.sqrt(2.0))], "gelu")
    one_plus = g.op("Add", [g.op("Erf", [scaled], "erf"), g.scalar("one", 1.0)], "gelu")
    half_x = g.op("Mul", [x, g.scalar("half", 0.5)], "gelu")
    return g.op("Mul", [half_x, one_plus], "gelu")


def _attention(g: _Graph, x: str, mask_bias: str, w: Weights, prefix: str, shape: BertShape) -> str:
    head_dim = shape.hidden // shape.heads
    split = g.ints("split_heads", 0, 0, shape.heads, head_dim)
    merge = g.ints("merge_heads", 0, 0, shape.hidden)

    def heads(name: str, perm: list[int]) -> str:
        projected = _linear(g, x, w, f"{prefix}.self.{name}")
        return g.op("Transpose", [g.op("Reshape", [projected, split], name)], name, perm=perm)

    query = heads("query", [0, 2, 1, 3])  # [B, H, S, D]
    key_t = heads("key", [0, 2, 3, 1])  # [B, H, D, S]
    value = heads("value", [0, 2, 1, 3])
    scale = g.scalar("attn_scale", 1.0 / math.sqrt(head_dim))
    scores = g.op("Mul", [g.op("MatMul", [query, key_t], "scores"), scale], "scores")
    probs = g.op("Softmax", [g.op("Add", [scores, mask_bias], "masked")], "probs", axis=-1)
    context = g.op("MatMul", [probs, value], "context")
    merged = g.op(
        "Reshape", [g.op("Transpose", [context], "context", perm=[0, 2, 1, 3]), merge], "merged"
    )
    return _linear(g, merged, w, f"{prefix}.output.dense")


def build_model(weights: Weights, shape: BertShape, *, half_word_table: bool = True) -> Any:
    """The ONNX ModelProto: (input_ids, attention_mask) int64 [B, S] -> unit vectors [B, H].

    `half_word_table=False` keeps the word table in float32, for the int8 quantiser (which
    quantises that Gather itself and accepts float32 tables only).
    """
    from onnx import TensorProto, checker, helper

    g = _Graph()
    eps = shape.layer_norm_eps
    positions = np.asarray(weights["embeddings.position_embeddings.weight"], np.float32)
    type_zero = np.asarray(weights["embeddings.token_type_embeddings.weight"], np.float32)[0]
    # The word table is half the model (30522 x 384); float16 saves 22 MB of RSS and moved
    # sentence cosines by < 1e-6 over the eval texts (benchmarks/embeddings.py).
    word_table = np.asarray(weights["embeddings.word_embeddings.weight"], np.float32)
    word = g.const(
        "word_embeddings", word_table.astype(np.float16) if half_word_table else word_table
    )
    pos = g.const("position_plus_type0", positions + type_zero)

    # Embeddings: word rows + the first S position rows (token type 0 folded in), then LayerNorm.
    seq_len = g.op(
        "Slice",
        [
            g.op("Shape", [INPUT_IDS], "shape"),
            g.ints("i1", 1),
            g.ints("i2", 2),
        ],
        "seq_len",
    )
    pos_rows = g.op("Slice", [pos, g.ints("i0", 0), seq_len], "pos_rows")
    tokens = g.op("Gather", [word, INPUT_IDS], "tokens", axis=0)
    if half_word_table:
        tokens = g.op("Cast", [tokens], "tokens", to=TensorProto.FLOAT)
    x = _layer_norm(
        g, g.op("Add", [tokens, pos_rows], "embedded"), weights, "embeddings.LayerNorm", eps
    )

    # Padding mask as an additive bias [B, 1, 1, S]: 0 where attended, a large negative elsewhere.
    mask = g.op("Cast", [ATTENTION_MASK], "mask", to=TensorProto.FLOAT)
    inverted = g.op("Sub", [g.scalar("one", 1.0), mask], "inverted")
    blocked = g.op("Mul", [inverted, g.scalar("neg", -1e9)], "blocked")
    mask_bias = g.op("Unsqueeze", [blocked, g.ints("axes12", 1, 2)], "bias")

    for i in range(shape.layers):
        p = f"encoder.layer.{i}"
        attended = _attention(g, x, mask_bias, weights, f"{p}.attention", shape)
        x = _layer_norm(
            g, g.op("Add", [attended, x], "res"), weights, f"{p}.attention.output.LayerNorm", eps
        )
        inner = _gelu(g, _linear(g, x, weights, f"{p}.intermediate.dense"))
        out = _linear(g, inner, weights, f"{p}.output.dense")
        x = _layer_norm(g, g.op("Add", [out, x], "res"), weights, f"{p}.output.LayerNorm", eps)

    # sentence-transformers head: mean over real tokens, then unit length.
    mask3 = g.op("Unsqueeze", [mask, g.ints("axis2", 2)], "mask3")
    summed = g.op(
        "ReduceSum", [g.op("Mul", [x, mask3], "masked_x"), g.ints("axis1", 1)], "sum", keepdims=0
    )
    count = g.op("ReduceSum", [mask3, g.ints("axis1", 1)], "count", keepdims=0)
    count = g.op("Max", [count, g.scalar("tiny", 1e-9)], "count")
    mean = g.op("Div", [summed, count], "mean")
    norm = g.op("ReduceL2", [mean], "norm", axes=[-1], keepdims=1)  # axes: attribute in opset 17
    norm = g.op("Max", [norm, g.scalar("eps12", 1e-12)], "norm")
    g.nodes.append(helper.make_node("Div", [mean, norm], [OUTPUT], name=OUTPUT))

    graph = helper.make_graph(
        g.nodes,
        "all-MiniLM-L6-v2",
        [
            helper.make_tensor_value_info(INPUT_IDS, TensorProto.INT64, ["batch", "sequence"]),
            helper.make_tensor_value_info(ATTENTION_MASK, TensorProto.INT64, ["batch", "sequence"]),
        ],
        [helper.make_tensor_value_info(OUTPUT, TensorProto.FLOAT, ["batch", shape.hidden])],
        g.initializers,
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name="inference-mesh",
    )
    model.ir_version = 8  # readable by every ONNX Runtime that supports opset 17
    checker.check_model(model)
    return model
