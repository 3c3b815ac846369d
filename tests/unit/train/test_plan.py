"""The data plan: order, packing, dealing to workers, resume filtering."""

import numpy as np
import pytest

from factory.train.plan import build_plan, epoch_order, pack

IDS = [f"s{i}" for i in range(8)]
LENGTHS = np.array([5, 3, 9, 2, 7, 4, 6, 1])
PASS = np.array([0.0, 1.0, 0.5, 1.0, np.nan, 0.5, 0.25, 0.0])


def _plan(**overrides):
    kwargs = dict(curriculum="shuffle", seed=0, epochs=1, max_seq_len=10, packing=False, num_workers=2,
                  micro_batch_size=1, grad_accum=2, max_steps=None)
    kwargs.update(overrides)
    return build_plan(IDS, LENGTHS, PASS, **kwargs)


def test_easy_to_hard_orders_by_pass_rate_then_length_missing_last():
    order = [IDS[i] for i in epoch_order(IDS, LENGTHS, PASS, "easy_to_hard", seed=0, epoch=0)]
    assert order == ["s3", "s1", "s5", "s2", "s6", "s7", "s0", "s4"]


def test_easy_to_hard_reshuffles_after_the_first_epoch():
    later = list(epoch_order(IDS, LENGTHS, PASS, "easy_to_hard", seed=0, epoch=1))
    assert later == list(epoch_order(IDS, LENGTHS, PASS, "shuffle", seed=0, epoch=1))
    assert later != list(epoch_order(IDS, LENGTHS, PASS, "easy_to_hard", seed=0, epoch=0))


def test_shuffle_is_seeded_and_independent_of_input_order():
    first = [IDS[i] for i in epoch_order(IDS, LENGTHS, PASS, "shuffle", seed=3, epoch=0)]
    rev_ids, rev_len, rev_pass = IDS[::-1], LENGTHS[::-1], PASS[::-1]
    second = [rev_ids[i] for i in epoch_order(rev_ids, rev_len, rev_pass, "shuffle", seed=3, epoch=0)]
    assert first == second
    assert first != [IDS[i] for i in epoch_order(IDS, LENGTHS, PASS, "shuffle", seed=4, epoch=0)]


def test_epochs_reshuffle():
    assert list(epoch_order(IDS, LENGTHS, PASS, "shuffle", 0, 0)) != list(epoch_order(IDS, LENGTHS, PASS, "shuffle", 0, 1))


@pytest.mark.parametrize(("packing", "expected"), [(False, [0, 1, 2, 3]), (True, [0, 0, 1, 2])])
def test_pack_fills_sequences_greedily_within_max_len(packing, expected):
    assert list(pack(np.array([4, 6, 5, 6]), max_seq_len=10, packing=packing)) == expected


def test_steps_cover_consecutive_global_sequences_dealt_round_robin():
    plan = _plan()
    assert plan.total_steps == 2 and plan.sequences_per_step == 4 and plan.dropped_samples == 0
    table = plan.placements.to_pylist()
    assert all(row["rank"] == row["seq"] % 2 and row["step"] == row["seq"] // 4 for row in table)


def test_trailing_partial_batch_and_max_steps_are_dropped():
    assert _plan(epochs=2, grad_accum=3).dropped_samples == 16 - 12
    assert _plan(max_steps=1).dropped_samples == 4


def test_duplicate_sample_ids_are_refused():
    with pytest.raises(ValueError, match="sample_id"):
        build_plan(["a", "a"], np.array([1, 1]), np.array([0.0, 0.0]), curriculum="shuffle", seed=0, epochs=1,
                   max_seq_len=4, packing=False, num_workers=1, micro_batch_size=1, grad_accum=1, max_steps=None)


def test_for_rank_from_resume_step_keeps_only_later_steps():
    part = _plan().for_rank(1, start_step=1).to_pylist()
    assert part and all(row["rank"] == 1 and row["step"] >= 1 for row in part)


def test_sample_longer_than_max_seq_len_is_refused_not_cut():
    with pytest.raises(ValueError, match="exceeds max_seq_len"):
        build_plan(["a", "b"], np.array([3, 11]), np.array([0.0, 0.0]), curriculum="shuffle", seed=0, epochs=1,
                   max_seq_len=10, packing=False, num_workers=1, micro_batch_size=1, grad_accum=1, max_steps=None)
