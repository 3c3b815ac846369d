"""Student SFT through Ray Train × DeepSpeed on CPU: one shared ZeRO-2, two-worker run, checked from
several sides (loss curve vs a plain torch loop, checkpoint layout, loadability, training card)."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from factory import synthetic, tiny
from factory.schema import DATASET_SCHEMA, conform

LOSS_RTOL = 1e-4
"""ZeRO-2 over two gloo ranks vs one process differ only in float summation order (seen: ~1e-7)."""


def write_snapshot(directory: Path, tokenizer_path: str, n: int, seed: int = 0) -> list[str]:
    """``n`` teacher-style rows (DATASET_SCHEMA) over two Parquet files."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_path)
    rng = random.Random(seed)
    rows = []
    for i, problem in enumerate(synthetic.make_problems(n, seed=seed)):
        user = synthetic.user_message(problem["prompt"])
        rows.append({"prompt_id": f"p{i}", "task": "math", "prompt": user, "source": "test", "source_row": i + 1,
                     "sample_index": 0, "sample_id": f"p{i}:k:0", "gen_key": "k", "gen_status": "ok",
                     "prompt_text": tiny.chat_prompt(tokenizer, user), "completion": synthetic.completion_for(problem["prompt"]),
                     "pass_rate": rng.choice([None, 0.0, 0.25, 0.5, 1.0])})
    table = conform(pa.Table.from_pylist(rows), DATASET_SCHEMA)
    directory.mkdir(parents=True, exist_ok=True)
    half = n // 2
    paths = [directory / "part-00000.parquet", directory / "part-00001.parquet"]
    pq.write_table(table.slice(0, half), paths[0])
    pq.write_table(table.slice(half), paths[1])
    return [str(p) for p in paths]


@pytest.fixture(scope="module")
def zero2_run(tiny_models, ray_local, tmp_path_factory):
    from factory.train import TrainConfig, run_training

    root = tmp_path_factory.mktemp("train")
    files = write_snapshot(root / "snapshot", tiny_models.student, n=40)
    cfg = TrainConfig(student=tiny_models.student, num_workers=2, cpus_per_worker=0.5, zero_stage=2, lr=1e-3,
                      warmup_ratio=0.25, micro_batch_size=2, grad_accum=2, max_seq_len=96, packing=True,
                      curriculum="easy_to_hard", checkpoint_every_steps=2, max_steps=4)
    result = run_training(cfg, files, str(root / "run"), snapshot_version="snap-001")
    return cfg, files, root / "run", result


def test_zero2_two_workers_match_single_process_loss_curve(zero2_run, tiny_models):
    from factory.train.reference import encode_files, replay
    from factory.train.run import plan_data

    cfg, files, _, result = zero2_run
    plan, _ = plan_data(cfg, files, tiny_models.student)
    expected = replay(cfg, tiny_models.student, plan, encode_files(files, tiny_models.student, cfg.max_seq_len))
    assert result.steps == len(result.loss_curve) == 4
    assert result.loss_curve == pytest.approx(expected.loss_curve, rel=LOSS_RTOL)
    assert result.final_loss == result.loss_curve[-1] < result.loss_curve[0]


def test_latest_marker_names_final_checkpoint_and_periodic_one_exists(zero2_run):
    _, _, run_dir, result = zero2_run
    assert (run_dir / "checkpoints" / "latest").read_text().strip() == "step_00000004"
    assert Path(result.checkpoint_dir) == run_dir / "checkpoints" / "step_00000004"
    assert (run_dir / "checkpoints" / "step_00000002" / "model.safetensors").exists()
    assert (run_dir / "deepspeed" / "step_00000004").is_dir()
    assert not list((run_dir / "checkpoints").glob(".tmp-*"))


def test_final_checkpoint_loads_with_transformers(zero2_run):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    _, _, _, result = zero2_run
    model = AutoModelForCausalLM.from_pretrained(result.checkpoint_dir)
    tokenizer = AutoTokenizer.from_pretrained(result.checkpoint_dir)
    ids = tokenizer(tiny.chat_prompt(tokenizer, "1+2?"), add_special_tokens=False, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        logits = model(input_ids=ids).logits
    assert torch.isfinite(logits).all()


def test_training_card_records_snapshot_curriculum_and_config(zero2_run):
    cfg, _, _, result = zero2_run
    card = json.loads((Path(result.checkpoint_dir) / "training_card.json").read_text())
    assert card["snapshot_version"] == "snap-001"
    assert card["curriculum"] == "easy_to_hard"
    assert card["config"] == cfg.model_dump(mode="json")
    assert card["step"] == 4 and card["truncated_samples"] == result.truncated_samples
    assert "snap-001" in (Path(result.checkpoint_dir) / "README.md").read_text()


def test_truncated_samples_are_counted(zero2_run, tiny_models):
    from factory.train.reference import encode_files

    cfg, files, _, result = zero2_run
    over = sum(len(ids) > cfg.max_seq_len for ids, _ in encode_files(files, tiny_models.student, 10_000).values())
    assert result.truncated_samples == over > 0
    assert result.tokens_per_s > 0


def test_rerun_of_finished_run_returns_its_result_without_training(zero2_run):
    from factory.train import run_training

    cfg, files, run_dir, result = zero2_run
    again = run_training(cfg, files, str(run_dir), snapshot_version="snap-001")
    assert (again.checkpoint_dir, again.steps, again.loss_curve) == (result.checkpoint_dir, result.steps, result.loss_curve)
