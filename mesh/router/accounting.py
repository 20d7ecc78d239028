"""Money per request: the budget hold taken before a call, settled by what it really cost.

A hold starts at the chosen candidate's estimate; a fallback to a dearer candidate raises it
first (and is skipped when that would break the budget), so concurrent requests can never
overspend by more than what the requests in flight may still cost.

Holds live in this process (BudgetTracker) or, when router replicas share a PostgreSQL ledger,
in that database (SharedBudgets): then a budgeted tenant's hold and settlement each cost a
database round trip, and its ledger row is written with the settlement; a tenant without a
budget costs none. `hold`, `raise_to` and `settle` are coroutines for that reason; on the
in-process path they never wait.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from mesh.config import BaselineSettings
from mesh.router.budget import BudgetTracker, Reservation
from mesh.router.costs import actual_cost, baseline_cost
from mesh.router.ledger import Ledger, LedgerRow
from mesh.router.shared_budgets import SharedBudgets
from mesh.v1 import types_pb2

log = logging.getLogger(__name__)


@dataclass
class Hold:
    """One request's reservations (several when a fallback needed a larger one).

    `shared`: the reservations are rows in the shared store (the tenant has a budget there).
    A tenant without a budget in the shared store holds nothing, but `amount_usd` still says
    what the request may cost (a stream stopped mid-way is charged that much).
    """

    tenant: str
    reservations: list[Reservation] = field(default_factory=list)
    shared: bool = False
    amount_usd: float = 0.0


class Accounting:
    """Budgets before the call, cost and ledger after it."""

    def __init__(
        self,
        budgets: BudgetTracker,
        baseline: BaselineSettings,
        ledger: Ledger | None = None,
        shared: SharedBudgets | None = None,
    ) -> None:
        self.budgets = budgets
        self.baseline = baseline
        self.ledger = ledger
        self.shared = shared

    async def hold(self, tenant: str, estimate_usd: float) -> Hold:
        """Reserve the estimate or raise BudgetExceeded (BudgetStoreUnavailable: the shared
        store is down and the tenant has a budget)."""
        hold = Hold(tenant, shared=self.shared is not None)
        await self._reserve(hold, max(estimate_usd, 0.0))
        return hold

    async def raise_to(self, hold: Hold, estimate_usd: float) -> None:
        """Grow the hold to cover a dearer candidate (raises as `hold`, holding as before)."""
        extra = estimate_usd - hold.amount_usd
        if extra > 0:
            await self._reserve(hold, extra)

    async def _reserve(self, hold: Hold, amount_usd: float) -> None:
        if self.shared is None:
            hold.reservations.append(self.budgets.reserve(hold.tenant, amount_usd))
        else:
            limits = self.budgets.budget(hold.tenant)
            if limits is not None:  # no budget, no round trip
                hold.reservations.append(await self.shared.reserve(hold.tenant, amount_usd, limits))
        hold.amount_usd += amount_usd

    async def settle(self, hold: Hold | None, actual_usd: float, row: LedgerRow | None) -> None:
        """Replace every reservation by the actual cost and record the ledger row (the shared
        store writes both in one transaction)."""
        if self.ledger is None:
            row = None
        if hold is not None and hold.shared and hold.reservations:
            assert self.shared is not None
            await self.shared.settle(hold.tenant, hold.reservations, actual_usd, row)
            return
        if hold is not None:
            self._settle_here(hold, actual_usd)
        if row is not None:
            self.record(row)

    def settle_nowait(self, hold: Hold, actual_usd: float) -> None:
        """Settle without a ledger row and without waiting (0 releases): a request that ended
        without an answer, on paths that cannot wait."""
        if hold.shared and hold.reservations:
            assert self.shared is not None
            self.shared.settle_nowait(hold.tenant, hold.reservations, actual_usd)
        else:
            self._settle_here(hold, actual_usd)

    def _settle_here(self, hold: Hold, actual_usd: float) -> None:
        if hold.shared or not hold.reservations:
            return
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
