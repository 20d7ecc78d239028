"""What every config section shares: strict base model, address rules, Tier, shared defaults.

This module sits at the bottom of mesh.config: the section modules import it, it imports no
other part of the mesh than the generated contract types (for Tier's wire value).
"""

from __future__ import annotations

import enum
import ipaddress
import os
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from mesh.v1 import types_pb2


class ConfigError(ValueError):
    """A config file that cannot be used; the message names file, line, key and reason."""


class StrictModel(BaseModel):
    """Base of every config section: unknown keys fail (a typo is never ignored), immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)


def field_default(model: type[BaseModel], name: str) -> Any:
    """A config field's default, for a CLI flag or constructor that must agree with the config.

    Reading it from the model keeps one default per setting instead of a copy that drifts.
    """
    return model.model_fields[name].get_default(call_default_factory=True)


DEFAULT_HEARTBEAT_INTERVAL_S = 2.0
"""How often nodes report load: the router's stated term, and a node's own until it hears it."""

DEFAULT_MAX_MESSAGE_BYTES = 4 * 1024 * 1024
"""Largest gRPC message a mesh server accepts or a channel sends (RESOURCE_EXHAUSTED above)."""


class Tier(enum.StrEnum):
    """Model capability classes, cheapest first; the one definition config and wire share.

    Config and logs use the names (`small` ... `frontier`); the contract carries
    `mesh.v1.ModelTier` numbers, which `proto` and `from_proto` convert to and from.
    """

    SMALL = "small"
    MEDIUM = "medium"
    LARGE = "large"
    FRONTIER = "frontier"

    @property
    def proto(self) -> types_pb2.ModelTier:
        """This tier's `mesh.v1.ModelTier` value."""
        return _PROTO_BY_TIER[self]

    @classmethod
    def from_proto(cls, value: int) -> Tier:
        """The tier of a `mesh.v1.ModelTier` value; ValueError for UNSPECIFIED or unknown."""
        try:
            return _TIER_BY_PROTO[value]
        except KeyError:
            raise ValueError(f"{value} is not a model tier") from None

    @classmethod
    def named(cls, name: object) -> Tier | None:
        """The tier called `name` (`small` ... `frontier`), or None for anything else."""
        return next((tier for tier in cls if tier.value == name), None)

    @classmethod
    def ordered_protos(cls) -> tuple[types_pb2.ModelTier, ...]:
        """Every tier's wire value, cheapest first (index = rank)."""
        return tuple(tier.proto for tier in cls)


_PROTO_BY_TIER: dict[Tier, types_pb2.ModelTier] = {
    Tier.SMALL: types_pb2.MODEL_TIER_SMALL,
    Tier.MEDIUM: types_pb2.MODEL_TIER_MEDIUM,
    Tier.LARGE: types_pb2.MODEL_TIER_LARGE,
    Tier.FRONTIER: types_pb2.MODEL_TIER_FRONTIER,
}
_TIER_BY_PROTO: dict[int, Tier] = {proto: tier for tier, proto in _PROTO_BY_TIER.items()}


def tier_name(value: int) -> str:
    """The name of a `mesh.v1.ModelTier` value for logs and reasons; `unspecified` if none."""
    tier = _TIER_BY_PROTO.get(value)
    return tier.value if tier is not None else "unspecified"


Address = Annotated[str, Field(min_length=3, description="host:port")]


def check_address(value: str) -> str:
    """host:port with a port in 0..65535 (0: pick a free one); returns the value unchanged."""
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"{value!r} is not host:port (port 0 picks a free one)")
    return value


def is_wildcard(address: str) -> bool:
    """Whether a listen address binds every interface (its bound address is not dialable)."""
    return address.rpartition(":")[0].strip("[]") in ("", "0.0.0.0", "::", "*")


def check_dialable(value: str) -> str:
    """An address another process connects to: host:port, no wildcard host, no port 0."""
    check_address(value)
    if is_wildcard(value) or int(value.rpartition(":")[2]) == 0:
        raise ValueError(f"{value!r} cannot be dialled (wildcard host or port 0)")
    return value


def is_loopback(address: str) -> bool:
    """Whether a listen address stays on this machine."""
    host = address.rpartition(":")[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def data_dir() -> Path:
    """Where every mesh process keeps its SQLite files (ledger, audit, traces).

    `$MESH_DATA_DIR`, else `inference-mesh` in the user cache dir (`$XDG_CACHE_HOME`, else
    ~/.cache): processes started with the same environment meet in the same files.
    """
    root = os.environ.get("MESH_DATA_DIR")
    if root:
        return Path(root)
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "inference-mesh"


def ensure_sqlite_dir(url: str) -> None:
    """Create the folder of a file-backed SQLite URL (sqlite[+driver]:///path/to.db), so a
    fresh data dir works for every store, not only for the one that happened to open first."""
    scheme, sep, rest = url.partition(":///")
    if not sep or scheme.split("+", 1)[0] != "sqlite":
        return
    path = rest.split("?", 1)[0]
    if path and path != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
