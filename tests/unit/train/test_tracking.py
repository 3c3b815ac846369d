"""Metric sinks and progress lines: TensorBoard event files read back, ~10 progress lines per run,
clear errors for trackers whose package is missing."""

import logging

import pytest

from factory.console import MARK
from factory.train.tracking import Progress, Trackers, check_trackers, format_eta


def test_tensorboard_event_files_hold_every_logged_scalar(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    trackers = Trackers(["tensorboard"], str(tmp_path), "p", None, "run", {})
    for step in (1, 2, 3):
        trackers.log(step, {"loss": 1.0 / step, "lr": 1e-3, "mfu": None})
    trackers.close()
    events = EventAccumulator(str(tmp_path))
    events.Reload()
    assert set(events.Tags()["scalars"]) == {"train/loss", "train/lr"}  # None (no MFU on CPU) is skipped
    assert [(e.step, round(e.value, 4)) for e in events.Scalars("train/loss")] == [(1, 1.0), (2, 0.5), (3, 0.3333)]


@pytest.mark.parametrize("name", ["wandb", "mlflow"])
def test_missing_tracker_package_is_named_with_the_field(name):
    import importlib.util

    if importlib.util.find_spec(name) is not None:
        pytest.skip(f"{name} is installed here")
    with pytest.raises(ValueError, match=rf"train\.log_to: {name} needs the {name} package"):
        check_trackers(["tensorboard", name])


def test_progress_writes_about_six_lines_with_step_loss_and_eta(caplog):
    progress = Progress(start_step=0, total_steps=740)
    with caplog.at_level(logging.INFO, logger="factory.train"):
        for step in range(1, 741):
            progress.step(step, loss=0.5, tokens_per_s=1000.0)
    lines = [r.getMessage() for r in caplog.records]
    assert all(line.startswith(MARK) for line in lines)  # console-bound: the run's console shows them
    lines = [line.removeprefix(MARK) for line in lines]
    assert 5 <= len(lines) <= 7
    assert lines[0].startswith("train: step 124/740  loss 0.5000") and "ETA" in lines[0]
    assert lines[-1].startswith("train: step 740/740") and lines[-1].endswith("ETA 0s")


def test_resumed_progress_counts_only_this_sessions_steps():
    progress = Progress(start_step=30, total_steps=36)
    assert [s for s in range(31, 37) if progress.due(s)] == list(range(31, 37))


@pytest.mark.parametrize(("seconds", "text"), [(42.4, "42s"), (185, "3m05s"), (3720, "1h02m")])
def test_eta_is_compact(seconds, text):
    assert format_eta(seconds) == text
