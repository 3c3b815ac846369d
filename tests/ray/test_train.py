"""Student SFT through Ray Train × DeepSpeed on CPU: one shared ZeRO-2, two-worker run of a student
whose chat template differs from the teacher's, checked from several sides (loss and grad-norm curves
vs a plain torch loop, what was trained on, checkpoint layout, loadability, training card, metrics,
TensorBoard). Precision and sharding modes: ``test_train_modes.py``."""

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
MAX_SEQ_LEN = 256
"""The synthetic chains are 130-160 tokens (170-200 in ChatML); write_snapshot's long rows exceed this."""
CHATML = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
          "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
"""The student's own template (ChatML, no forced <think>), unlike the tiny teacher's R1 template."""


def write_snapshot(directory: Path, tokenizer_path: str, n: int, seed: int = 0, long_every: int = 0) -> list[str]:
    """``n`` teacher-style rows (DATASET_SCHEMA, with ``messages``) over two Parquet files; with
    ``long_every``, every such row gets a completion too long for a 96-token max_seq_len."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_path)
    rng = random.Random(seed)
    rows = []
    for i, problem in enumerate(synthetic.make_problems(n, seed=seed)):
        user = synthetic.user_message(problem["prompt"])
        completion = synthetic.completion_for(problem["prompt"])
        if long_every and i % long_every == 0:
            completion = completion + " " + "9" * (150 + 7 * i)
        rows.append({"prompt_id": f"p{i}", "task": "math", "prompt": user, "source": "test", "source_row": i + 1,
                     "sample_index": 0, "sample_id": f"p{i}:k:0", "gen_key": "k", "gen_status": "ok",
                     "prompt_text": tiny.chat_prompt(tokenizer, user), "completion": completion,
                     "messages": [{"role": "user", "content": user}, {"role": "assistant", "content": "<think>\n" + completion}],
                     "pass_rate": rng.choice([None, 0.0, 0.25, 0.5, 1.0])})
    table = conform(pa.Table.from_pylist(rows), DATASET_SCHEMA)
    directory.mkdir(parents=True, exist_ok=True)
    half = n // 2
    paths = [directory / "part-00000.parquet", directory / "part-00001.parquet"]
    pq.write_table(table.slice(0, half), paths[0])
    pq.write_table(table.slice(half), paths[1])
    return [str(p) for p in paths]


def chatml_student(tiny_student: str, directory: Path) -> str:
    """A copy of the tiny student whose tokenizer carries the ChatML template."""
    import shutil

    from transformers import AutoTokenizer

    shutil.copytree(tiny_student, directory)
    tokenizer = AutoTokenizer.from_pretrained(tiny_student)
    tokenizer.chat_template = CHATML
    tokenizer.save_pretrained(directory)
    return str(directory)


@pytest.fixture(scope="module")
def zero2_run(tiny_models, ray_local, tmp_path_factory):
    from factory.train import TrainConfig, run_training

    root = tmp_path_factory.mktemp("train")
    student = chatml_student(tiny_models.student, root / "student")
    files = write_snapshot(root / "snapshot", tiny_models.teacher, n=48, long_every=4)
    cfg = TrainConfig(student=student, num_workers=2, cpus_per_worker=0.5, zero_stage=2, lr=1e-3,
                      warmup_ratio=0.25, micro_batch_size=2, grad_accum=2, max_seq_len=MAX_SEQ_LEN, packing=True,
                      curriculum="easy_to_hard", checkpoint_every_steps=2, max_steps=4, loss_chunk_tokens=64)
    result = run_training(cfg, files, str(root / "run"), snapshot_version="snap-001")
    return cfg, files, root / "run", result


def test_zero2_two_workers_match_single_process_loss_and_grad_norm_curves(zero2_run):
    from factory.train.reference import encode_files, replay
    from factory.train.run import plan_data

    cfg, files, _, result = zero2_run
    plan, _ = plan_data(cfg, files, cfg.student)
    expected = replay(cfg, cfg.student, plan, encode_files(files, cfg.student))
    assert result.steps == len(result.loss_curve) == 4
    assert result.loss_curve == pytest.approx(expected.loss_curve, rel=LOSS_RTOL)
    assert result.grad_norm_curve == pytest.approx(expected.grad_norm_curve, rel=LOSS_RTOL)
    assert result.final_loss == result.loss_curve[-1] < result.loss_curve[0]


def test_training_text_is_rendered_with_the_students_template(zero2_run):
    """The tokens the workers trained on (same curve as the replay above) decode to ChatML prompts."""
    from transformers import AutoTokenizer

    from factory.train.reference import encode_files

    cfg, files, _, _ = zero2_run
    tokenizer = AutoTokenizer.from_pretrained(cfg.student)
    ids, n_prompt = next(iter(encode_files(files, cfg.student).values()))
    prompt = tokenizer.decode(ids[:n_prompt], skip_special_tokens=False)
    assert prompt.startswith("<|im_start|>user\n") and prompt.endswith("<|im_end|>\n<|im_start|>assistant\n<think>\n")
    assert "<｜User｜>" not in prompt  # the teacher's R1 template (its prompt_text) is not used


def test_learning_rate_curve_follows_the_schedule(zero2_run):
    from factory.train.schedule import lr_multiplier

    cfg, _, _, result = zero2_run
    assert result.lr_curve == pytest.approx([cfg.lr * lr_multiplier(s, 4, cfg.warmup_ratio, cfg.schedule) for s in range(4)])


def test_latest_marker_names_final_checkpoint_and_periodic_one_exists(zero2_run):
    _, _, run_dir, result = zero2_run
    assert (run_dir / "checkpoints" / "latest").read_text().strip() == "step_00000004"
    assert Path(result.checkpoint_dir) == run_dir / "checkpoints" / "step_00000004"
    assert (run_dir / "checkpoints" / "step_00000002" / "model.safetensors").exists()
    assert (run_dir / "deepspeed" / "step_00000004").is_dir()
    assert not list((run_dir / "checkpoints").glob(".tmp-*"))


def test_final_checkpoint_loads_with_transformers_and_keeps_the_students_template(zero2_run):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    _, _, _, result = zero2_run
    model = AutoModelForCausalLM.from_pretrained(result.checkpoint_dir)
    tokenizer = AutoTokenizer.from_pretrained(result.checkpoint_dir)
    assert tokenizer.chat_template == CHATML
    text = tokenizer.apply_chat_template([{"role": "user", "content": "1+2?"}], tokenize=False, add_generation_prompt=True)
    with torch.no_grad():
        logits = model(input_ids=tokenizer(text, add_special_tokens=False, return_tensors="pt")["input_ids"]).logits
    assert torch.isfinite(logits).all()


def test_training_card_records_snapshot_curriculum_and_config(zero2_run):
    cfg, _, _, result = zero2_run
    card = json.loads((Path(result.checkpoint_dir) / "training_card.json").read_text())
    assert card["snapshot_version"] == "snap-001"
    assert card["curriculum"] == "easy_to_hard"
    assert card["config"] == cfg.model_dump(mode="json")
    assert card["step"] == 4 and card["overlong_samples"] == result.overlong_samples
    assert "snap-001" in (Path(result.checkpoint_dir) / "README.md").read_text()


def test_overlong_samples_are_dropped_not_trained_and_their_lengths_kept(zero2_run):
    from factory.train.reference import encode_files
    from factory.train.run import plan_data

    cfg, files, _, result = zero2_run
    lengths = {sid: len(ids) for sid, (ids, _) in encode_files(files, cfg.student).items()}
    overlong = {sid for sid, n in lengths.items() if n > cfg.max_seq_len}
    plan, _ = plan_data(cfg, files, cfg.student)
    assert result.overlong_samples == len(overlong) > 0
    assert not overlong & set(plan.placements.column("sample_id").to_pylist())
    data = json.loads(Path(result.metrics_path).read_text())["data"]
    assert data["overlong_lengths"]["count"] == len(overlong) and sum(data["overlong_lengths"]["counts"]) == len(overlong)
    assert data["overlong_lengths"]["max"] == max(lengths[sid] for sid in overlong)


def test_metrics_hold_throughput_memory_timings_and_the_measured_mode(zero2_run):
    _, _, _, result = zero2_run
    metrics = json.loads(Path(result.metrics_path).read_text())
    assert result.tokens_per_s > 0 and result.mfu is None  # no peak FLOP/s on CPU
    assert result.peak_memory_bytes > 100 * 2**20
    assert metrics["mode"]["zero_stage"] == 2 and metrics["mode"]["param_dtype"] == "float32"
    assert {"setup_s", "data_wait_s", "steps_s", "plan_s", "fit_s"} <= set(metrics["timings"])


def test_tensorboard_event_files_hold_the_runs_curves(zero2_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    _, _, _, result = zero2_run
    events = EventAccumulator(json.loads(Path(result.metrics_path).read_text())["tensorboard_dir"])
    events.Reload()
    assert {"train/loss", "train/lr", "train/grad_norm", "train/tokens_per_s", "train/peak_memory_gib"} <= set(events.Tags()["scalars"])
    assert [e.value for e in events.Scalars("train/loss")] == pytest.approx(result.loss_curve, rel=1e-6)
    assert [e.step for e in events.Scalars("train/lr")] == [1, 2, 3, 4]


def test_rerun_of_finished_run_returns_its_result_without_training(zero2_run):
    from factory.train import run_training

    cfg, files, run_dir, result = zero2_run
    again = run_training(cfg, files, str(run_dir), snapshot_version="snap-001")
    assert (again.checkpoint_dir, again.steps, again.loss_curve) == (result.checkpoint_dir, result.steps, result.loss_curve)
