"""The content budget: the style weight's scale moves against the content distance's error, within bounds,
and its state survives a checkpoint."""

from __future__ import annotations

import math

import pytest

from fastnst.training.content_budget import MAX_LOG_SCALE, ContentBudget


def test_too_much_content_lost_lowers_the_style_weight_and_too_little_raises_it():
    over, under = ContentBudget(target=1.0, power=10.0), ContentBudget(target=1.0, power=10.0)
    assert over.update(content_loss=15.0) < 1.0  # distance 1.5 > 1: paint less
    assert under.update(content_loss=5.0) > 1.0  # distance 0.5 < 1: paint more
    on_target = ContentBudget(target=1.0, power=10.0)
    assert on_target.update(content_loss=10.0) == pytest.approx(1.0)


def test_the_step_is_the_gain_times_the_smoothed_relative_error():
    b = ContentBudget(target=2.0, power=1.0, gain=0.5, smoothing=0.75)
    b.update(3.0)  # level 3.0: error 0.5
    assert b.level == pytest.approx(3.0) and b.log_scale == pytest.approx(-0.25)
    b.update(1.0)  # level 0.75 * 3 + 0.25 * 1 = 2.5: error 0.25
    assert b.level == pytest.approx(2.5) and b.log_scale == pytest.approx(-0.25 - 0.125)


def test_a_persistent_error_settles_at_the_bound_not_at_zero_or_infinity():
    b = ContentBudget(target=0.1, power=1.0, gain=1.0)
    for _ in range(100):
        b.update(5.0)
    assert b.log_scale == pytest.approx(-MAX_LOG_SCALE) and b.scale == pytest.approx(1 / 16)


def test_the_state_round_trips_through_plain_numbers():
    a = ContentBudget(target=0.8, power=3.0)
    for loss in (2.0, 3.5, 2.9):
        a.update(loss)
    state = a.state_dict()
    assert all(v is None or isinstance(v, float) for v in state.values())
    b = ContentBudget(target=0.8, power=3.0)
    b.load_state_dict(state)
    assert b.update(2.2) == a.update(2.2) and math.isfinite(b.scale)


@pytest.mark.parametrize("target, power", [(0.0, 1.0), (1.0, 0.0), (-1.0, 1.0)])
def test_a_budget_needs_a_positive_target_and_unit(target, power):
    with pytest.raises(ValueError, match="positive target and power"):
        ContentBudget(target=target, power=power)
