"""mesh.yaml: one validated document for the router, the nodes, the bridges and telemetry.

Unknown keys and bad values fail at start with the file, the line, the key path and the reason.
Secrets are never config values: config names an environment variable or a file instead.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, ValidationError, model_validator

from mesh.config.bridges import BridgeConfig
from mesh.config.common import ConfigError, StrictModel, Tier
from mesh.config.nodes import NodeConfig
from mesh.config.router import RouterConfig
from mesh.config.telemetry import TelemetrySettings


class MeshConfig(StrictModel):
    """The whole mesh.yaml."""

    router: RouterConfig = Field(default_factory=RouterConfig)
    nodes: list[NodeConfig] = Field(
        default_factory=list, description="nodes that `mesh up` starts in-process"
    )
    bridges: list[BridgeConfig] = Field(
        default_factory=list,
        description="bridge nodes (external APIs) that `mesh up` starts in-process",
    )
    telemetry: TelemetrySettings = Field(default_factory=TelemetrySettings)

    @model_validator(mode="after")
    def _unique_nodes(self) -> MeshConfig:
        ids = (
            [n.id for n in self.nodes]
            + [b.id for b in self.bridges]
            + [u.id for u in self.router.upstreams]
        )
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(
                "node ids must be unique across nodes, bridges and upstreams: " + ", ".join(dupes)
            )
        return self

    @model_validator(mode="after")
    def _router_reaches_its_nodes(self) -> MeshConfig:
        # The embedded router dials these nodes: both sides must agree on TLS or it never can.
        dialled = [("nodes", i, n.tls) for i, n in enumerate(self.nodes)]
        dialled += [("bridges", i, b.tls) for i, b in enumerate(self.bridges)]
        for section, index, tls in dialled:
            if (tls is None) != (self.router.upstream_tls is None):
                has, lacks = (
                    ("router.upstream_tls", f"{section}[{index}].tls")
                    if tls is None
                    else (f"{section}[{index}].tls", "router.upstream_tls")
                )
                raise ValueError(
                    f"{has} is set but {lacks} is not: the router could not reach that node "
                    "(set both, or neither)"
                )
        return self


def _line_of(root: yaml.Node | None, loc: tuple[int | str, ...]) -> int | None:
    """1-based line of the deepest YAML node on the error's key path."""
    node, line = root, None
    for part in loc:
        if node is None:
            break
        line = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            node = next((v for k, v in node.value if k.value == part), None)
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            node = node.value[part] if part < len(node.value) else None
        else:
            node = None
    if node is not None:
        line = node.start_mark.line + 1
    return line


def _format_loc(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def parse_config(text: str, source: str = "<string>") -> MeshConfig:
    """Validate a YAML document; raise ConfigError naming file, line, key and reason."""
    try:
        data: Any = yaml.safe_load(text)
        root = yaml.compose(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}" if mark else source
        raise ConfigError(f"{where}: not valid YAML: {getattr(exc, 'problem', exc)}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the top level must be a mapping, not {type(data).__name__}")
    try:
        return MeshConfig.model_validate(data)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            loc = tuple(p for p in err["loc"] if not str(p).startswith("function-"))
            line = _line_of(root, loc)
            where = f"{source}:{line}" if line else source
            reason = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
            lines.append(f"{where}: {_format_loc(loc)}: {reason}")
        raise ConfigError("invalid config:\n  " + "\n  ".join(lines)) from None


def load_config(path: str | Path) -> MeshConfig:
    """Read and validate mesh.yaml."""
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read: {exc.strerror}") from None
    return parse_config(text, str(p))


def default_config() -> MeshConfig:
    """The embedded default: one router on 127.0.0.1:50051 and one SmolLM2 node."""
    return MeshConfig(
        router=RouterConfig(),
        nodes=[
            NodeConfig(
                id="local-smollm2",
                engine=default_engine(),
                model="smollm2-135m-instruct",
                tier=Tier.SMALL,
                input_price_per_mtok=0.02,
                output_price_per_mtok=0.04,
                aliases=["smollm2"],
            )
        ],
    )


def default_engine() -> Literal["vllm", "transformers", "fake"]:
    """`$MESH_ENGINE` if set, else vLLM where it is installed, else transformers."""
    chosen = os.environ.get("MESH_ENGINE", "")
    if chosen in ("vllm", "transformers", "fake"):
        return chosen  # type: ignore[return-value]
    return "vllm" if vllm_available() else "transformers"


def vllm_available() -> bool:
    """Whether vLLM is installed (the default engine then); import-free and cheap."""
    return importlib.util.find_spec("vllm") is not None
