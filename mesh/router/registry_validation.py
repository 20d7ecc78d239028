"""What a registering node may claim: node id, address, load and model cards, all bounded.

A registered card decides where tenants' prompts go (tier, price, context window), and every
card becomes a routing candidate examined on every request, so a Register is checked field by
field before the table sees it: an unknown tier, a negative or NaN price, a port out of range,
a wildcard host, 17 cards or a 1 MB alias are all INVALID_ARGUMENT with BadRequest field
violations. Descriptions never echo the value (it may be huge, or a secret pasted by mistake),
and at most MAX_VIOLATIONS are reported so the status always fits in trailing metadata.
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Sequence

from mesh.config import Tier, is_wildcard
from mesh.contract.errors import FieldViolation, InvalidRequest
from mesh.v1 import registry_pb2, types_pb2

MAX_NODE_ID_CHARS = 128
MAX_ADDRESS_CHARS = 256
MAX_NAME_CHARS = 128  # model ids, aliases, providers, capabilities
MAX_ALIASES = 16
MAX_CAPABILITIES = 16
MAX_PRICE_PER_MTOK = 1_000_000.0  # USD; far above any real model, far below overflow
MIN_CONTEXT_WINDOW = 16
MAX_CONTEXT_WINDOW = 10_000_000
MAX_LOAD_COUNT = 1_000_000  # running, waiting, max_inflight
MAX_TTFT_MS = 3_600_000.0
MAX_VIOLATIONS = 20

# The node-id rule of mesh.yaml (NodeConfig.id), so any configured node can register.
_NODE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
# Model ids and aliases as providers spell them: gpt-4o-mini, meta-llama/Llama-3.1-8B, llama3:8b.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/@+-]*")
_LABEL = r"[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?"
_HOSTNAME = re.compile(rf"{_LABEL}(\.{_LABEL})*\.?")  # also matches IPv4 dotted quads
_KINDS = frozenset(types_pb2.ModelKind.values())


class _Problems:
    """Collects violations up to MAX_VIOLATIONS (the rest are counted, not listed)."""

    def __init__(self) -> None:
        self.items: list[FieldViolation] = []
        self.dropped = 0

    def add(self, field: str, description: str) -> None:
        if len(self.items) < MAX_VIOLATIONS:
            self.items.append(FieldViolation(field, description))
        else:
            self.dropped += 1

    def raise_if_any(self, what: str) -> None:
        if not self.items:
            return
        more = f" ({self.dropped} more not listed)" if self.dropped else ""
        raise InvalidRequest(f"invalid {what}{more}", violations=self.items)


def _check_node_id(problems: _Problems, node_id: str) -> None:
    if not node_id:
        problems.add("node_id", "must not be empty")
    elif len(node_id) > MAX_NODE_ID_CHARS:
        problems.add("node_id", f"at most {MAX_NODE_ID_CHARS} characters")
    elif not _NODE_ID.fullmatch(node_id):
        problems.add("node_id", "letters, digits and . _ -, starting with a letter or digit")


def _host_ok(host: str) -> bool:
    if host.startswith("[") and host.endswith("]"):
        try:
            return isinstance(ipaddress.ip_address(host[1:-1]), ipaddress.IPv6Address)
        except ValueError:
            return False
    return len(host) <= 253 and bool(_HOSTNAME.fullmatch(host))


def _check_address(problems: _Problems, address: str) -> None:
    if len(address) > MAX_ADDRESS_CHARS:
        problems.add("address", f"at most {MAX_ADDRESS_CHARS} characters")
        return
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        problems.add("address", "must be host:port with a port in 1..65535")
    elif is_wildcard(address):
        problems.add("address", "a wildcard host cannot be dialled; give the node's own address")
    elif not _host_ok(host):
        problems.add("address", "host must be a hostname, an IPv4 address or a bracketed IPv6")


def _check_name(problems: _Problems, field: str, value: str) -> None:
    if not value:
        problems.add(field, "must not be empty")
    elif len(value) > MAX_NAME_CHARS:
        problems.add(field, f"at most {MAX_NAME_CHARS} characters")
    elif not _NAME.fullmatch(value):
        problems.add(field, "letters, digits and . _ : / @ + -, starting with a letter or digit")


def _check_names(problems: _Problems, field: str, values: Sequence[str], limit: int) -> None:
    if len(values) > limit:
        problems.add(field, f"at most {limit} entries")
        return
    for i, value in enumerate(values):
        _check_name(problems, f"{field}[{i}]", value)


def _check_price(problems: _Problems, field: str, value: float) -> None:
    if not math.isfinite(value) or not 0.0 <= value <= MAX_PRICE_PER_MTOK:
        problems.add(field, f"must be a finite number within [0, {MAX_PRICE_PER_MTOK:g}]")


def _check_card(problems: _Problems, field: str, card: types_pb2.ModelCard) -> None:
    _check_name(problems, f"{field}.model_id", card.model_id)
    if card.provider:
        _check_name(problems, f"{field}.provider", card.provider)
    if card.kind not in _KINDS:
        problems.add(f"{field}.kind", "must be a known ModelKind")
    try:
        Tier.from_proto(card.tier)
    except ValueError:
        problems.add(f"{field}.tier", "must be MODEL_TIER_SMALL, _MEDIUM, _LARGE or _FRONTIER")
    window = card.context_window
    if window and not MIN_CONTEXT_WINDOW <= window <= MAX_CONTEXT_WINDOW:
        problems.add(
            f"{field}.context_window",
            f"0 (unknown) or within [{MIN_CONTEXT_WINDOW}, {MAX_CONTEXT_WINDOW}]",
        )
    _check_price(problems, f"{field}.input_price_per_mtok", card.input_price_per_mtok)
    _check_price(problems, f"{field}.output_price_per_mtok", card.output_price_per_mtok)
    _check_price(problems, f"{field}.cached_input_price_per_mtok", card.cached_input_price_per_mtok)
    _check_names(problems, f"{field}.capabilities", card.capabilities, MAX_CAPABILITIES)
    _check_names(problems, f"{field}.aliases", card.aliases, MAX_ALIASES)


def _check_load(problems: _Problems, load: types_pb2.NodeLoad) -> None:
    # A node reporting a negative queue or a zero-or-NaN TTFT would win least_load / latency.
    for name in ("running", "waiting", "max_inflight"):
        if not 0 <= getattr(load, name) <= MAX_LOAD_COUNT:
            problems.add(f"load.{name}", f"must be within [0, {MAX_LOAD_COUNT}]")
    if not (math.isfinite(load.kv_cache_usage) and 0.0 <= load.kv_cache_usage <= 1.0):
        problems.add("load.kv_cache_usage", "must be within [0, 1]")
    if not (math.isfinite(load.ewma_ttft_ms) and 0.0 <= load.ewma_ttft_ms <= MAX_TTFT_MS):
        problems.add("load.ewma_ttft_ms", f"must be within [0, {MAX_TTFT_MS:g}]")


def validate_register(request: registry_pb2.RegisterRequest, max_models: int) -> None:
    """Raise InvalidRequest with every problem (up to MAX_VIOLATIONS) of a registration.

    The card count is checked first and alone: 20,000 cards are refused without looking at any.
    """
    problems = _Problems()
    _check_node_id(problems, request.node_id)
    _check_address(problems, request.address)
    _check_load(problems, request.load)
    models = request.models
    if not models:
        problems.add("models", "at least one model card is required")
    elif len(models) > max_models:
        problems.add("models", f"at most {max_models} model cards per node")
    else:
        seen: set[str] = set()
        for i, card in enumerate(models):
            _check_card(problems, f"models[{i}]", card)
            if card.model_id in seen:
                problems.add(f"models[{i}].model_id", "the same model id is listed twice")
            seen.add(card.model_id)
    problems.raise_if_any("registration")


def validate_heartbeat(request: registry_pb2.HeartbeatRequest) -> None:
    problems = _Problems()
    _check_node_id(problems, request.node_id)
    _check_load(problems, request.load)
    problems.raise_if_any("heartbeat")


def validate_deregister(request: registry_pb2.DeregisterRequest) -> None:
    problems = _Problems()
    _check_node_id(problems, request.node_id)
    problems.raise_if_any("deregistration")
