"""Checkpoint publishing: a checkpoint is visible only once complete and marked latest."""

import pytest

from factory import tiny
from factory.train.checkpoint import latest_checkpoint, mark_latest, publish_hf_checkpoint, read_trainer_state, remove_stale_temps


@pytest.fixture(scope="module")
def model_and_tokenizer():
    tokenizer = tiny.build_tokenizer()
    return tiny.new_model(tiny.SPEC.student, tokenizer, seed=0), tokenizer


def test_checkpoint_is_not_latest_until_marked(tmp_path, model_and_tokenizer):
    model, tokenizer = model_and_tokenizer
    path = publish_hf_checkpoint(str(tmp_path), 3, model, tokenizer, None, {"snapshot_version": "v1"}, {"step": 3})
    assert latest_checkpoint(str(tmp_path)) is None
    mark_latest(str(tmp_path), 3)
    assert latest_checkpoint(str(tmp_path)) == path
    assert read_trainer_state(path)["step"] == 3
    assert {"config.json", "model.safetensors", "tokenizer.json", "training_card.json", "README.md"} <= {p.name for p in path.iterdir()}


def test_stale_temp_dirs_of_killed_run_are_removed(tmp_path):
    stale = tmp_path / "checkpoints" / ".tmp-step_00000002"
    stale.mkdir(parents=True)
    remove_stale_temps(str(tmp_path))
    assert not stale.exists()


def test_marker_naming_missing_checkpoint_is_ignored(tmp_path):
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "latest").write_text("step_00000009\n")
    assert latest_checkpoint(str(tmp_path)) is None
