"""Admission by cost and the rate meter it budgets by."""

from __future__ import annotations

import pytest

from service.admission import CHARS_PER_TOKEN, Admission
from service.budget import INITIAL_RATE, CostBudget, QueueFullError, RateMeter


def admission(max_in_flight: int = 2) -> Admission:
    lanes = {
        "predict": CostBudget(lambda: 1_000.0, lambda: 100.0, 64),
        "explain": CostBudget(lambda: 10.0, lambda: 1.0, 64),
    }
    a = Admission(max_in_flight, lanes, most={"predict": 64 * 801.0, "explain": 1e12})
    a.max_tokens = 800
    return a


def test_slots_are_bounded_and_always_given_back() -> None:
    a = admission(max_in_flight=2)
    with a.slot("predict"), a.slot("predict"):
        assert a.in_flight == 2
        with pytest.raises(QueueFullError, match=r"too many requests in flight \(limit 2\)"), a.slot("predict"):
            pass
    assert a.in_flight == 0
    with pytest.raises(RuntimeError), a.slot("explain"):
        raise RuntimeError("the request failed")
    assert a.in_flight == 0


def test_a_body_estimate_is_checked_against_its_own_lane_and_holds_nothing() -> None:
    a = admission()
    a.check_estimate(None, "predict")  # size unknown: nothing to check before the body
    a.lanes["predict"].cost = 900.0
    a.check_estimate(int(99 * CHARS_PER_TOKEN), "predict")
    with pytest.raises(QueueFullError):
        a.check_estimate(int(101 * CHARS_PER_TOKEN), "predict")
    a.check_estimate(10**9, "explain")  # an empty lane takes any one request
    assert a.lanes["predict"].cost == 900.0 and a.lanes["explain"].cost == 0


def test_text_cost_is_characters_over_four_capped_at_max_tokens_plus_one() -> None:
    a = admission()
    assert a.text_cost("x" * 40) == 11
    assert a.text_cost("x" * 100_000) == 801


def test_the_rate_starts_pessimistic_then_follows_real_batches() -> None:
    meter = RateMeter(workers=2)
    assert meter.value == INITIAL_RATE
    meter.observe(cost=1000, seconds=0.1)  # one worker did 10,000/s: two do 20,000/s
    assert meter.value == pytest.approx(0.8 * INITIAL_RATE + 0.2 * 20_000)
    assert meter.per_worker() == pytest.approx(meter.value / 2)
    before = meter.value
    meter.observe(cost=0, seconds=0.1)
    meter.observe(cost=10, seconds=0)
    assert meter.value == before
