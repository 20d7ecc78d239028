"""LiteLLM's proxy in a throw-away virtualenv of its own, for measuring it beside the mesh.

Its own venv because its dependencies must not touch the project's. `litellm[proxy]` does not
resolve on this index; its proxy dependencies are listed in
../shared/bench/litellm-proxy-requirements.txt (STACK.md). The version is pinned and checked
after install: 1.82.7, 1.82.8 and 1.107.0 are compromised releases and are refused.
The venv is built once into a ".partial" folder, checked, then moved into place, and reused
by later runs (under the mesh cache dir, $MESH_CACHE_DIR or ~/.cache/inference-mesh).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from nodes.assets import cache_dir

VERSION = "1.110.2"
COMPROMISED = frozenset({"1.82.7", "1.82.8", "1.107.0"})
REQUIREMENTS = (
    Path(__file__).resolve().parents[1].parent
    / "shared"
    / "bench"
    / "litellm-proxy-requirements.txt"
)
INSTALL_TIMEOUT_S = 1200.0


class Unavailable(RuntimeError):
    """The LiteLLM venv cannot be had; the message says why in one line."""


def venv_dir() -> Path:
    return cache_dir().parent / "bench-litellm-venv"


def installed_version(python: Path) -> str | None:
    probe = "import importlib.metadata as m; print(m.version('litellm'))"
    try:
        out = subprocess.run(
            [str(python), "-c", probe], capture_output=True, text=True, timeout=60, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def check_version(version: str | None) -> None:
    """Only the pinned release, never a compromised one."""
    if version in COMPROMISED:
        raise Unavailable(f"litellm {version} is a compromised release: refusing to run it")
    if version != VERSION:
        raise Unavailable(f"litellm {version or 'not installed'} found, {VERSION} required")


def ensure(log: Path) -> Path:
    """The venv's python with litellm VERSION and the proxy dependencies (built if missing)."""
    python = venv_dir() / "bin" / "python"
    if python.exists() and installed_version(python) == VERSION:
        return python
    if not REQUIREMENTS.exists():
        raise Unavailable(f"{REQUIREMENTS} is missing (../shared must sit beside the project)")
    partial = venv_dir().with_name(venv_dir().name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    print(f"building the LiteLLM venv in {venv_dir()} (once; log: {log})", flush=True)
    pip = [str(partial / "bin" / "python"), "-m", "pip", "install", "-q"]
    pip += [f"litellm=={VERSION}", "-r", str(REQUIREMENTS)]
    with log.open("wb") as sink:
        try:
            subprocess.run(
                [sys.executable, "-m", "venv", str(partial)], stdout=sink, stderr=sink, check=True
            )
            subprocess.run(pip, stdout=sink, stderr=sink, check=True, timeout=INSTALL_TIMEOUT_S)
        except (OSError, subprocess.SubprocessError) as exc:
            shutil.rmtree(partial, ignore_errors=True)
            raise Unavailable(f"pip could not build the LiteLLM venv ({exc}); see {log}") from exc
    check_version(installed_version(partial / "bin" / "python"))
    shutil.rmtree(venv_dir(), ignore_errors=True)
    partial.rename(venv_dir())  # run as `python -m ...`: the moved venv's scripts are not used
    check_version(installed_version(python))
    return python
