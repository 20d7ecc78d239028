"""Money per request: the budget hold taken before a call, settled by what it really cost.

A hold starts at the chosen candidate's estimate; a fallback to a dearer candidate raises it
first (and is skipped when that would break the budget), so concurrent requests can never
overspend by more than what the requests in flight may still cost.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from mesh.config import BaselineSettings
from mesh.router.budget import BudgetTracker, Reservation
from mesh.router.costs import actual_cost, baseline_cost
from mesh.router.ledger import Ledger, LedgerRow
from mesh.v1 import types_pb2

log = logging.getLogger(__name__)


@dataclass
class Hold:
    """One request's reservations (several when a fallback needed a larger one)."""

    tenant: str
    reservations: list[Reservation] = field(default_factory=list)

    @property
    def amount_usd(self) -> float:
        return sum(r.amount_usd for r in self.reservations)


class Accounting:
    """Budgets before the call, cost and ledger after it."""

    def __init__(
        self,
        budgets: BudgetTracker,
        baseline: BaselineSettings,
        ledger: Ledger | None = None,
    ) -> None:
        self.budgets = budgets
        self.baseline = baseline
        self.ledger = ledger

    def hold(self, tenant: str, estimate_usd: float) -> Hold:
        """Reserve the estimate or raise BudgetExceeded."""
        hold = Hold(tenant)
        hold.reservations.append(self.budgets.reserve(tenant, estimate_usd))
        return hold

    def raise_to(self, hold: Hold, estimate_usd: float) -> None:
        """Grow the hold to cover a dearer candidate (raises BudgetExceeded, holding as before)."""
        extra = estimate_usd - hold.amount_usd
        if extra > 0:
            hold.reservations.append(self.budgets.reserve(hold.tenant, extra))

    def settle(self, hold: Hold, actual_usd: float) -> None:
        """Replace every reservation by the actual cost (0 releases)."""
        first, *rest = hold.reservations
        self.budgets.settle(first, actual_usd)
        for reservation in rest:
            self.budgets.release(reservation)

    def cost(self, card: types_pb2.ModelCard, usage: types_pb2.Usage) -> float:
        """The node's own figure when it reports one, else the card's prices applied to usage."""
        return usage.cost_usd if usage.cost_usd > 0 else actual_cost(card, usage)

    def baseline_cost(self, usage: types_pb2.Usage) -> float:
        return baseline_cost(self.baseline, usage.input_tokens, usage.output_tokens)

    def record(self, row: LedgerRow) -> None:
        """Queue the ledger row; a ledger problem never fails the request."""
        if self.ledger is None:
            return
        try:
            self.ledger.record_nowait(row)
        except Exception:
            log.exception("ledger row for %s dropped", row.request_id)
