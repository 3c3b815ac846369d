"""Worker-side data handling: sequences from plan-ordered rows, full optimizer steps only, and the
dataset started before the engine is built."""

import threading
import time

import pytest

from factory.train.worker import shard_sequences, started_early, step_chunks


def test_rows_of_one_planned_sequence_become_one_sequence():
    rows = [{"seq": 0, "input_ids": [1, 2], "n_prompt": 1}, {"seq": 0, "input_ids": [3], "n_prompt": 1},
            {"seq": 1, "input_ids": [4, 5], "n_prompt": 1}]
    assert list(shard_sequences(iter(rows))) == [[([1, 2], 1), ([3], 1)], [([4, 5], 1)]]


def test_only_full_optimizer_steps_are_yielded():
    steps = list(step_chunks(iter(range(7)), micro_batch_size=2, grad_accum=3))
    assert steps == [[[0, 1], [2, 3], [4, 5]]]


def test_first_row_is_fetched_before_anyone_asks():
    fetched = threading.Event()

    def rows():
        fetched.set()
        yield from (1, 2, 3)

    chained = started_early(rows())
    assert fetched.wait(timeout=5)
    assert list(chained) == [1, 2, 3]


def test_error_while_fetching_early_is_raised_to_the_consumer():
    def rows():
        raise RuntimeError("dataset failed")
        yield  # noqa: unreachable: makes this a generator

    chained = started_early(rows())
    time.sleep(0.05)
    with pytest.raises(RuntimeError, match="dataset failed"):
        next(chained)


def test_empty_shard_yields_nothing():
    assert list(started_early(iter([]))) == []
