"""LR schedule: warmup to the peak, then cosine to zero, cosine to a floor, or constant + decay to zero."""

import pytest

from factory.train.schedule import lr_multiplier


@pytest.mark.parametrize("schedule", ["cosine", "cosine_min_lr", "constant_decay"])
def test_warmup_rises_linearly_to_peak(schedule):
    values = [lr_multiplier(s, 100, 0.1, schedule, 0.1) for s in range(11)]
    assert values == sorted(values) and values[0] < 0.1 and values[10] == 1.0


@pytest.mark.parametrize(("schedule", "bound"), [("cosine", 0.001), ("constant_decay", 0.12)])
def test_last_step_is_near_zero(schedule, bound):
    assert lr_multiplier(99, 100, 0.1, schedule) < bound


def test_cosine_min_lr_decays_to_its_floor_and_never_below():
    values = [lr_multiplier(s, 100, 0.03, "cosine_min_lr", 0.1) for s in range(100)]
    assert min(values) >= 0.1 and values[-1] == pytest.approx(0.1, abs=1e-3)
    assert values[3:] == sorted(values[3:], reverse=True)


def test_cosine_min_lr_with_zero_floor_is_plain_cosine():
    assert [lr_multiplier(s, 50, 0.1, "cosine_min_lr", 0.0) for s in range(50)] == \
           [lr_multiplier(s, 50, 0.1, "cosine") for s in range(50)]


def test_constant_decay_holds_peak_until_last_tenth():
    assert lr_multiplier(80, 100, 0.0, "constant_decay") == 1.0
    assert 0.0 < lr_multiplier(95, 100, 0.0, "constant_decay") < 1.0
