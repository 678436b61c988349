"""The per-partner daily epsilon budget (streams/budget.py): a window that would overspend is
refused (the caller publishes nothing), the state survives a restart as JSON, and a forgotten day is
refused rather than started afresh. Covers T6, T7 (issue 12: per-partner daily budget)."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from privaflow.streams.budget import EpsilonLedger, utc_day

DAY = "2024-05-01"


def test_windows_spend_until_the_budget_is_gone_then_are_refused() -> None:
    ledger = EpsilonLedger({"city": 1.0, "retailer": 0.5})
    assert [ledger.try_spend("city", DAY, 0.3) for _ in range(4)] == [True, True, True, False]
    assert ledger.remaining("city", DAY) == pytest.approx(0.1)
    assert ledger.try_spend("city", DAY, 0.1)  # what is left can still be spent exactly
    assert not ledger.try_spend("city", DAY, 1e-6)
    assert ledger.refused == {"city": {DAY: 2}}
    # another partner, another day: their own budgets
    assert ledger.try_spend("retailer", DAY, 0.5) and not ledger.try_spend("retailer", DAY, 0.5)
    assert ledger.try_spend("city", "2024-05-02", 1.0)


def test_a_budget_filled_by_many_small_windows_is_filled_exactly() -> None:
    ledger = EpsilonLedger({"city": 1.0})
    assert all(ledger.try_spend("city", DAY, 0.1) for _ in range(10))  # 10 x 0.1 sums to 0.9999999999999999
    assert not ledger.try_spend("city", DAY, 0.1)
    ledger = EpsilonLedger({"city": 1.0})
    assert sum(ledger.try_spend("city", DAY, 1 / 96) for _ in range(100)) == 96  # 15-min windows


def test_the_state_is_json_and_a_restarted_ledger_refuses_what_the_old_one_would() -> None:
    ledger = EpsilonLedger({"city": 1.0})
    ledger.try_spend("city", DAY, 0.75)
    ledger.try_spend("city", DAY, 0.75)
    state = json.loads(json.dumps(ledger.to_state()))
    again = EpsilonLedger.from_state({"city": 1.0}, state)
    assert not again.try_spend("city", DAY, 0.5) and again.try_spend("city", DAY, 0.25)
    assert again.refused == {"city": {DAY: 2}}
    with pytest.raises(ValueError, match="version"):
        EpsilonLedger.from_state({"city": 1.0}, {**state, "version": 99})


def test_a_forgotten_day_is_refused_never_reset() -> None:
    ledger = EpsilonLedger({"city": 1.0})
    ledger.try_spend("city", "2024-04-30", 1.0)
    ledger.try_spend("city", DAY, 0.5)
    ledger.forget_before(dt.date(2024, 5, 1))
    assert ledger.to_state()["spent"] == {"city": {DAY: 0.5}}
    assert not ledger.try_spend("city", "2024-04-30", 0.01)  # a late window of a dropped day
    assert ledger.remaining("city", "2024-04-30") == 0.0
    ledger.forget_before("2024-04-01")  # the floor never moves back
    assert not ledger.try_spend("city", "2024-04-30", 0.01)


def test_bad_input_is_refused_naming_it() -> None:
    with pytest.raises(ValueError, match="partner 'city': epsilon_per_day"):
        EpsilonLedger({"city": 0})
    ledger = EpsilonLedger({"city": 1.0})
    with pytest.raises(ValueError, match="partner 'museum' has no DP budget"):
        ledger.try_spend("museum", DAY, 0.1)
    with pytest.raises(ValueError, match="epsilon must be"):
        ledger.try_spend("city", DAY, float("nan"))
    with pytest.raises(ValueError, match="2024-05-01"):
        ledger.try_spend("city", "May 1st", 0.1)


def test_utc_day_of_a_window_start() -> None:
    midnight = int(dt.datetime(2024, 5, 2, tzinfo=dt.UTC).timestamp() * 1000)
    assert utc_day(midnight - 1) == "2024-05-01" and utc_day(midnight) == "2024-05-02"


spends = st.lists(st.tuples(st.sampled_from(["a", "b"]), st.sampled_from(["2024-05-01", "2024-05-02"]),
                            st.floats(min_value=1e-4, max_value=0.6)), max_size=60)


@settings(max_examples=300)
@given(spends)
def test_what_is_accepted_never_exceeds_a_budget_and_refusals_are_only_for_overspending(plan) -> None:
    budgets = {"a": 1.0, "b": 0.3}
    ledger = EpsilonLedger(budgets)
    accepted: dict[tuple[str, str], float] = {}
    for partner, day, eps in plan:
        before = accepted.get((partner, day), 0.0)
        if ledger.try_spend(partner, day, eps):
            accepted[(partner, day)] = before + eps
        else:
            assert before + eps > budgets[partner]
    for (partner, _day), total in accepted.items():
        assert total <= budgets[partner] + 1e-9
