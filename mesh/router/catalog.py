"""The routing table: static nodes from config beside nodes that registered themselves.

Registered nodes must keep sending heartbeats; one silent past the TTL leaves the table so the
router stops sending it traffic. Static nodes never expire (their health comes from probes), and
their ids cannot be registered over. The table is plain in-process state touched only from the
event loop, so it needs no lock. Who may write through RegistryService, and what, is decided in
`mesh.router.registry`; router replicas sharing a PostgreSQL ledger mirror each other's
registrations into their tables (`mesh.router.shared_registry`).
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from google.protobuf import timestamp_pb2

from mesh.config import RegistrySettings, field_default
from mesh.contract.errors import FieldViolation, InvalidRequest
from mesh.v1 import registry_pb2, types_pb2

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000

Clock = Callable[[], float]


@dataclass(frozen=True, eq=False)
class Candidate:
    """One model on one node, as a routing policy sees it.

    Compared by identity (eq=False): candidates are snapshots built per request, and hashing
    protobuf fields is not possible anyway.
    """

    node_id: str
    address: str
    card: types_pb2.ModelCard
    load: types_pb2.NodeLoad
    healthy: bool
    static: bool

    @property
    def model(self) -> str:
        return self.card.model_id

    @property
    def tier(self) -> int:
        return int(self.card.tier)

    @property
    def external(self) -> bool:
        return self.card.kind == types_pb2.MODEL_KIND_EXTERNAL

    def serves(self, name: str) -> bool:
        """Whether a pin (model id or alias) names this candidate's model."""
        return name == self.card.model_id or name in self.card.aliases


@dataclass
class NodeEntry:
    """Mutable routing-table row for one node."""

    node_id: str
    address: str
    cards: list[types_pb2.ModelCard]
    load: types_pb2.NodeLoad
    static: bool
    last_seen: float  # monotonic, for TTL
    last_seen_wall: float  # epoch seconds, for display
    healthy: bool = True
    extra: dict[str, str] = field(default_factory=dict)
    # SHA-256 of the registration lease its registrant holds (mesh.contract.registration);
    # empty for static nodes. Kept on the row so that it expires with it.
    lease_digest: bytes = b""


class Catalog:
    """Nodes by id; registered entries expire after `ttl_s` without a heartbeat."""

    def __init__(
        self,
        *,
        ttl_s: float = field_default(RegistrySettings, "ttl_s"),
        heartbeat_interval_s: float = field_default(RegistrySettings, "heartbeat_interval_s"),
        clock: Clock = time.monotonic,
        wall_clock: Clock = time.time,
    ) -> None:
        self.ttl_s = ttl_s
        self.heartbeat_interval_s = heartbeat_interval_s
        self._clock = clock
        self._wall = wall_clock
        self._nodes: dict[str, NodeEntry] = {}
        self._on_cards: Callable[[frozenset[int]], None] | None = None

    def watch_tiers(self, callback: Callable[[frozenset[int]], None] | None) -> None:
        """Call `callback` with the table's tiers after each change of a node's cards (the
        router builds its tier estimator when they first differ); None stops it."""
        self._on_cards = callback

    def _cards_changed(self) -> None:
        if self._on_cards is not None:
            self._on_cards(self.tiers())

    # -- membership -------------------------------------------------------------------------
    def add_static(
        self,
        node_id: str,
        address: str,
        cards: Sequence[types_pb2.ModelCard] = (),
        load: types_pb2.NodeLoad | None = None,
    ) -> None:
        """A node from config; its cards usually arrive later from ListModels."""
        self._nodes[node_id] = NodeEntry(
            node_id,
            address,
            list(cards),
            load or types_pb2.NodeLoad(),
            True,
            self._clock(),
            self._wall(),
        )
        self._cards_changed()

    def register(
        self,
        node_id: str,
        address: str,
        cards: Sequence[types_pb2.ModelCard],
        load: types_pb2.NodeLoad | None = None,
        *,
        lease_digest: bytes = b"",
    ) -> None:
        """Join or refresh. A static id is never registered over (ValueError): config owns it,
        and a registered row would take its address and never expire."""
        old = self._nodes.get(node_id)
        if old is not None and old.static:
            raise ValueError(f"{node_id} is a static node")
        self._nodes[node_id] = NodeEntry(
            node_id,
            address,
            list(cards),
            load or types_pb2.NodeLoad(),
            False,
            self._clock(),
            self._wall(),
            healthy=True,
            lease_digest=lease_digest,
        )
        self._cards_changed()

    def heartbeat(self, node_id: str, load: types_pb2.NodeLoad) -> bool:
        """Record load; False when the node is unknown (it should register again)."""
        self.expire()
        entry = self._nodes.get(node_id)
        if entry is None:
            return False
        entry.load = load
        entry.last_seen = self._clock()
        entry.last_seen_wall = self._wall()
        return True

    def mirror(
        self,
        node_id: str,
        address: str,
        cards: Sequence[types_pb2.ModelCard],
        load: types_pb2.NodeLoad,
        *,
        lease_digest: bytes,
        age_s: float,
    ) -> bool:
        """A registered node as the registry shared by router replicas holds it, last seen
        `age_s` ago (through any replica). Health learnt by this replica's probes is kept while
        the registration is the same; a static id is never mirrored over (False)."""
        old = self._nodes.get(node_id)
        if old is not None and old.static:
            return False
        seen = self._clock() - max(age_s, 0.0)
        wall = self._wall() - max(age_s, 0.0)
        if old is not None and old.address == address and old.lease_digest == lease_digest:
            old.cards, old.load = list(cards), load
            if seen > old.last_seen:
                old.last_seen, old.last_seen_wall = seen, wall
        else:
            self._nodes[node_id] = NodeEntry(
                node_id, address, list(cards), load, False, seen, wall, lease_digest=lease_digest
            )
        self._cards_changed()
        return True

    def forget_registered(self, keep: Iterable[str], seen_before: float) -> list[str]:
        """Drop registered nodes not in `keep` (the shared registry no longer lists them) and not
        seen since `seen_before` (`now()` when the listing was read: later registrations
        through this replica were not in it); returns their ids."""
        kept = set(keep)
        gone = [
            n
            for n, e in self._nodes.items()
            if not e.static and n not in kept and e.last_seen < seen_before
        ]
        for node_id in gone:
            del self._nodes[node_id]
        return gone

    def now(self) -> float:
        """The catalog's (monotonic) clock."""
        return self._clock()

    def deregister(self, node_id: str) -> bool:
        """Remove a registered node; static nodes stay (config owns them)."""
        entry = self._nodes.get(node_id)
        if entry is None or entry.static:
            return False
        del self._nodes[node_id]
        return True

    def set_cards(self, node_id: str, cards: Sequence[types_pb2.ModelCard]) -> None:
        """Cards learnt from a node's ListModels (static nodes)."""
        if node_id in self._nodes:
            self._nodes[node_id].cards = list(cards)
            self._cards_changed()

    def set_load(self, node_id: str, load: types_pb2.NodeLoad) -> None:
        """Load learnt outside heartbeats (e.g. a ListModels probe)."""
        if node_id in self._nodes:
            self._nodes[node_id].load = load

    def set_health(self, node_id: str, healthy: bool) -> None:
        """Result of a health probe; a healthy probe also counts as being seen."""
        entry = self._nodes.get(node_id)
        if entry is None:
            return
        entry.healthy = healthy
        if healthy:
            entry.last_seen_wall = self._wall()
            if entry.static:
                entry.last_seen = self._clock()

    def seconds_since_seen(self, entry: NodeEntry) -> float:
        """How long ago the entry last registered or heartbeat (monotonic)."""
        return self._clock() - entry.last_seen

    def expires_in(self, entry: NodeEntry) -> float:
        """Seconds until a registered entry leaves the table without a heartbeat."""
        return max(0.0, self.ttl_s - self.seconds_since_seen(entry))

    def expire(self) -> list[str]:
        """Drop registered nodes silent past the TTL; returns their ids."""
        cutoff = self._clock() - self.ttl_s
        gone = [n for n, e in self._nodes.items() if not e.static and e.last_seen < cutoff]
        for node_id in gone:
            del self._nodes[node_id]
        return gone

    # -- reading ----------------------------------------------------------------------------
    def get(self, node_id: str) -> NodeEntry | None:
        self.expire()
        return self._nodes.get(node_id)

    def entries(self) -> list[NodeEntry]:
        """Live entries ordered by node id."""
        self.expire()
        return [self._nodes[k] for k in sorted(self._nodes)]

    def candidates(self, available: Callable[[str], bool] | None = None) -> list[Candidate]:
        """One candidate per (node, model); `available` adds e.g. the circuit breaker's view."""
        out: list[Candidate] = []
        for entry in self.entries():
            healthy = entry.healthy and (available is None or available(entry.node_id))
            out.extend(
                Candidate(entry.node_id, entry.address, card, entry.load, healthy, entry.static)
                for card in entry.cards
            )
        return out

    def tiers(self) -> frozenset[int]:
        """The tiers of every card in the table, healthy or not (as the tier screen reads it)."""
        return frozenset(int(card.tier) for entry in self._nodes.values() for card in entry.cards)

    def page(self, page_size: int, page_token: str) -> tuple[list[NodeEntry], str]:
        """A page ordered by node id, and the token for the next one ("" on the last page)."""
        size = _page_size(page_size)
        after = _decode_token(page_token)
        rows = [e for e in self.entries() if after is None or e.node_id > after]
        page = rows[:size]
        next_token = _encode_token(page[-1].node_id) if len(rows) > size else ""
        return page, next_token

    def registered_count(self) -> int:
        """Live registered (not static) entries."""
        self.expire()
        return sum(not e.static for e in self._nodes.values())

    def __len__(self) -> int:
        self.expire()
        return len(self._nodes)


# Page tokens are opaque to clients: a versioned cursor, base64 so nobody relies on its shape.
def _encode_token(after: str) -> str:
    raw = json.dumps({"v": 1, "after": after}).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_token(token: str) -> str | None:
    if not token:
        return None
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        data = json.loads(raw)
        after = data["after"]
        if data.get("v") != 1 or not isinstance(after, str):
            raise ValueError
        return after
    except (ValueError, KeyError, TypeError, binascii.Error):
        raise InvalidRequest(
            "page_token is not a token this server issued",
            violations=[FieldViolation("page_token", "not a token from a previous response")],
        ) from None


def _page_size(page_size: int) -> int:
    if page_size < 0:
        raise InvalidRequest(
            "page_size must not be negative",
            violations=[FieldViolation("page_size", "must be >= 0")],
        )
    return min(page_size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)


def node_info(
    entry: NodeEntry, breaker_state: int = registry_pb2.BREAKER_STATE_CLOSED
) -> registry_pb2.NodeInfo:
    """The wire form of a routing-table row."""
    seen = timestamp_pb2.Timestamp()
    seen.FromNanoseconds(int(entry.last_seen_wall * 1e9))
    return registry_pb2.NodeInfo(
        node_id=entry.node_id,
        address=entry.address,
        models=entry.cards,
        load=entry.load,
        source=registry_pb2.NODE_SOURCE_STATIC
        if entry.static
        else registry_pb2.NODE_SOURCE_REGISTERED,
        healthy=entry.healthy and breaker_state != registry_pb2.BREAKER_STATE_OPEN,
        breaker_state=breaker_state,  # type: ignore[arg-type]
        last_seen=seen,
    )


def iter_cards(candidates: Iterable[Candidate]) -> list[types_pb2.ModelCard]:
    """Distinct model cards (by model id) among candidates, for the router's ListModels."""
    seen: dict[str, types_pb2.ModelCard] = {}
    for cand in candidates:
        seen.setdefault(cand.card.model_id, cand.card)
    return [seen[k] for k in sorted(seen)]
