"""Each DP partner's daily privacy budget: how much epsilon its windows have spent per UTC day.

Every window released to a partner in DP mode spends that window's epsilon. Within one day the
releases compose sequentially (a person may appear in any number of windows, and nothing links
their appearances, so the worst case is that they appear in all of them): the day's privacy loss is
the sum of the windows' epsilons, and it may not exceed the partner's `epsilon_per_day`. A window
that would overspend is refused, and the caller publishes nothing for it (docs/privacy-model.md,
rule d).

The ledger lives in the worker's per-camera state (it is plain JSON: `to_state`/`from_state`), so the
budget is per camera and partner: a person seen by two cameras in a day can lose up to twice the
daily budget. It is pure bookkeeping (no clock, no I/O); the caller says which UTC day a window
belongs to (`utc_day` of its start) and drops days it no longer needs with `forget_before`, after
which those days are refused rather than started afresh.

    >>> ledger = EpsilonLedger({"city": 1.0})
    >>> [ledger.try_spend("city", "2024-05-01", 0.4) for _ in range(3)]
    [True, True, False]
    >>> ledger.remaining("city", "2024-05-01") == 1.0 - 0.8
    True
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping
from typing import Any, TypeVar

STATE_VERSION = 1
# float sums of per-window epsilons (10 x 0.1) may land a hair above the budget they exactly fill
_SLACK = 1e-9
_V = TypeVar("_V", int, float)


def utc_day(ts_ms: int) -> str:
    """The UTC day (`2024-05-01`) an epoch-millisecond timestamp falls on."""
    return dt.datetime.fromtimestamp(ts_ms / 1000, dt.UTC).date().isoformat()


def _day(day: str | dt.date) -> str:
    if isinstance(day, dt.date):
        return day.isoformat()
    try:
        return dt.date.fromisoformat(day).isoformat()
    except (TypeError, ValueError):
        raise ValueError(f"day must be a UTC date such as 2024-05-01, got {day!r}") from None


def _from(per_partner: dict[str, dict[str, _V]], day: str) -> dict[str, dict[str, _V]]:
    kept = {p: {d: v for d, v in days.items() if d >= day} for p, days in per_partner.items()}
    return {p: days for p, days in kept.items() if days}


class EpsilonLedger:
    """Epsilon spent per partner per UTC day, against each partner's daily budget."""

    def __init__(self, budgets: Mapping[str, float]) -> None:
        for partner, budget in budgets.items():
            if not (isinstance(budget, int | float) and math.isfinite(budget) and budget > 0):
                raise ValueError(f"partner {partner!r}: epsilon_per_day must be a finite number > 0, got {budget!r}")
        self.budgets = dict(budgets)
        self.spent: dict[str, dict[str, float]] = {}  # partner -> day -> epsilon spent
        self.refused: dict[str, dict[str, int]] = {}  # partner -> day -> windows refused
        self.floor: str | None = None  # days before this one are forgotten, so refused

    def _budget(self, partner: str) -> float:
        try:
            return float(self.budgets[partner])
        except KeyError:
            raise ValueError(f"partner {partner!r} has no DP budget (known: {', '.join(self.budgets)})") from None

    def remaining(self, partner: str, day: str | dt.date) -> float:
        """Epsilon still available to `partner` on `day` (0 for a forgotten day)."""
        d = _day(day)
        if self.floor is not None and d < self.floor:
            return 0.0
        return max(0.0, self._budget(partner) - self.spent.get(partner, {}).get(d, 0.0))

    def try_spend(self, partner: str, day: str | dt.date, epsilon: float) -> bool:
        """Spend `epsilon` of `partner`'s budget for `day` and return True, or, if that would exceed
        the budget (or the day was forgotten), spend nothing, count the refusal and return False."""
        if not (isinstance(epsilon, int | float) and math.isfinite(epsilon) and epsilon > 0):
            raise ValueError(f"epsilon must be a finite number > 0, got {epsilon!r}")
        d, budget = _day(day), self._budget(partner)
        spent = self.spent.get(partner, {}).get(d, 0.0)
        forgotten = self.floor is not None and d < self.floor
        if forgotten or spent + epsilon > budget + _SLACK:
            days = self.refused.setdefault(partner, {})
            days[d] = days.get(d, 0) + 1
            return False
        self.spent.setdefault(partner, {})[d] = spent + epsilon
        return True

    def charge(self, partner: str, day: str | dt.date, epsilon: float) -> None:
        """Count `epsilon` of a release made before this state was checkpointed (one the worker
        republishes unchanged after a crash): its privacy loss happened once and is accounted once,
        even when it takes the day over a budget lowered since."""
        d = _day(day)
        self._budget(partner)
        if self.floor is None or d >= self.floor:
            days = self.spent.setdefault(partner, {})
            days[d] = days.get(d, 0.0) + epsilon

    def forget_before(self, day: str | dt.date) -> None:
        """Drop the days before `day` (they can no longer be spent on: refused, never reset)."""
        d = _day(day)
        if self.floor is None or d > self.floor:
            self.floor = d
        self.spent = _from(self.spent, d)
        self.refused = _from(self.refused, d)

    def to_state(self) -> dict[str, Any]:
        """Plain JSON: what has been spent and refused (the budgets come from the site config)."""
        return {"version": STATE_VERSION, "floor": self.floor,
                "spent": {p: dict(days) for p, days in self.spent.items()},
                "refused": {p: dict(days) for p, days in self.refused.items()}}

    @classmethod
    def from_state(cls, budgets: Mapping[str, float], state: Mapping[str, Any]) -> EpsilonLedger:
        """Rebuild from `to_state()` with today's budgets (a partner's spending survives a budget change)."""
        if state.get("version") != STATE_VERSION:
            raise ValueError(f"epsilon ledger state version {state.get('version')!r} is not {STATE_VERSION}")
        ledger = cls(budgets)
        ledger.floor = state.get("floor")
        ledger.spent = {str(p): {_day(d): float(v) for d, v in days.items()} for p, days in state["spent"].items()}
        ledger.refused = {str(p): {_day(d): int(v) for d, v in days.items()} for p, days in state["refused"].items()}
        return ledger
