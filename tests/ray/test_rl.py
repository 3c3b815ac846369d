"""GRPO on the tiny teacher through ``factory.rl``: a short run raises the correctness reward; a verifier
outage during RL is excluded and counted, not scored 0; the multi-worker path users run on clusters (two Ray
Train workers, one DeepSpeed world over gloo) runs end to end through ``run_rl``, and its checkpoint loads in
vLLM with the identity it recorded."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pyarrow as pa
import pytest

from factory import synthetic
from factory.config import load_config
from factory.rl.config import parse_rl_config
from factory.schema import DATASET_SCHEMA, conform
from factory.verifiers.answers import extract_final_answer
from factory.verifiers.math_verifier import MathVerifier
from verifier_faults import kill_before_reply

REPO = Path(__file__).resolve().parents[2]
HELDOUT = "[{name: heldout, kind: synthetic, task: math, synthetic_n: 8, synthetic_split: heldout, synthetic_seed: 1}]"


def _factory(store_root: str = "runs/datasets"):
    return load_config(REPO / "configs" / "demo.yaml",
                       overrides=(f"store.root={store_root}", f"eval.heldout={HELDOUT}"))


def _spec(factory_cfg) -> dict:
    return {"verify": factory_cfg.verify.model_dump(mode="json"), "reward": factory_cfg.reward.model_dump(mode="json"),
            "prompting": factory_cfg.generation.prompting.model_dump(mode="json")}


def _rl(work_dir, name: str, **grpo):
    return parse_rl_config({
        "factory": str(REPO / "configs" / "demo.yaml"), "run": {"name": name, "work_dir": str(work_dir)},
        "grpo": {"group_size": 8, "prompts_per_step": 4, "micro_batch_size": 32, "max_completion_length": 96,
                 "temperature": 1.0, "learning_rate": 1e-3, "beta": 0.0, **grpo},
        "workers": {"num_workers": 1, "cpus_per_worker": 2}})


def _prompts(n: int, seed: int = 0) -> list[dict]:
    return [{**p, "tests": None, "entry_point": None} for p in synthetic.make_problems(n, seed)]


def test_a_short_grpo_run_raises_the_correctness_reward(tiny_models, tmp_path):
    from factory.rl.worker import train_policy

    # four prompts seen every step: a few steps are enough for the groups' advantages to show
    cfg = _rl(tmp_path, "rise", steps=30, learning_rate=2e-4)
    metrics = train_policy(cfg, tiny_models.teacher, _prompts(4, seed=2), _spec(_factory()), str(tmp_path / "rise"))
    correctness = metrics["curves"]["correctness"]
    first, last = sum(correctness[:3]) / 3, sum(correctness[-3:]) / 3
    assert last > first + 0.15, correctness


class OutageOnWrongAnswers(MathVerifier):
    """Fault injection: the real math worker is killed mid-judgement for every completion whose answer is
    wrong, so if an outage were scored 0 the step's mean correctness would include those zeros."""

    kills = correct = 0

    def judge_many(self, pairs):
        verdicts = super().judge_many(pairs)
        OutageOnWrongAnswers.correct += sum(verdict.status == "correct" for verdict in verdicts)
        return verdicts

    def _reply(self, proc, pair):
        answer, reference = pair
        if extract_final_answer(answer) not in (None, reference):
            OutageOnWrongAnswers.kills += 1
            kill_before_reply(self, proc)
        return super()._reply(proc, pair)


def test_a_verifier_outage_is_excluded_and_counted_not_scored_zero(tiny_models, tmp_path, monkeypatch):
    from factory.rl.worker import train_policy

    monkeypatch.setattr("factory.verifiers.MathVerifier", OutageOnWrongAnswers)
    OutageOnWrongAnswers.kills = OutageOnWrongAnswers.correct = 0
    cfg = _rl(tmp_path, "outage", steps=3)
    metrics = train_policy(cfg, tiny_models.teacher, _prompts(16, seed=5), _spec(_factory()), str(tmp_path / "outage"))
    assert metrics["excluded"]["error"] == OutageOnWrongAnswers.kills > 0
    batch = cfg.grpo.prompts_per_step * cfg.grpo.group_size
    curves = metrics["curves"]
    # mean correctness × completions still scored, summed over steps, is the number of correct completions:
    # the excluded ones were in no step's denominator
    scored_correct = sum((c or 0.0) * batch * (1 - e) for c, e in zip(curves["correctness"], curves["excluded_frac"]))
    assert scored_correct == pytest.approx(OutageOnWrongAnswers.correct)
    assert metrics["judged"] == cfg.grpo.steps * batch


def _snapshot(root: Path, n: int):
    """A committed snapshot whose prompts the teacher solves half the time (and a never-solved one)."""
    from factory.store import SnapshotStore

    rows = [{"prompt_id": p["prompt_id"], "task": "math", "prompt": p["prompt"], "reference": p["reference"],
             "source": "synthetic-train", "source_row": i + 1, "sample_index": 0, "sample_id": f"{p['prompt_id']}:k:0",
             "gen_key": "k", "gen_status": "ok", "pass_rate": 0.0 if i == 0 else 0.5}
            for i, p in enumerate(synthetic.make_problems(n, 7))]
    store = SnapshotStore(str(root), "demo-arith")
    with store.begin(schema=DATASET_SCHEMA) as staged:
        staged.write_table(conform(pa.Table.from_pylist(rows[1:]), DATASET_SCHEMA))
        staged.write_table(conform(pa.Table.from_pylist(rows[:1]), DATASET_SCHEMA), side="dropped")
        return staged.commit({"note": "rl test"})


@pytest.fixture(scope="module")
def two_worker_run(tiny_models, ray_local, tmp_path_factory):
    from factory.rl.run import run_rl

    root = tmp_path_factory.mktemp("rl")
    _snapshot(root / "datasets", 17)
    factory_cfg = _factory(str(root / "datasets"))
    cfg = parse_rl_config({
        "factory": str(REPO / "configs" / "demo.yaml"), "run": {"name": "two", "work_dir": str(root)},
        "policy": {"model": tiny_models.teacher},
        "grpo": {"group_size": 4, "prompts_per_step": 4, "micro_batch_size": 8, "steps": 2, "learning_rate": 1e-4,
                 "beta": 0.01, "max_completion_length": 96},
        "workers": {"num_workers": 2, "cpus_per_worker": 1},
        "eval": {"before": False, "samples": 1, "temperature": 0.0, "max_tokens": 96}})
    return run_rl(cfg, factory_cfg), root / "two"


def test_two_cpu_workers_train_as_one_deepspeed_world(two_worker_run):
    result, out = two_worker_run
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["num_processes"] == 2 and metrics["distributed_type"] == "DistributedType.DEEPSPEED"
    assert result.steps == 2 and result.judged == 2 * 16  # each step's 16 completions, judged once, over both ranks


def test_prompts_are_selected_from_the_snapshot_and_the_rest_reported(two_worker_run):
    result, _ = two_worker_run
    assert result.selection["selected"] == 16 and result.selection["left_out"] == {"never_solved": 1}


def test_the_checkpoint_records_its_lineage(two_worker_run, tiny_models):
    from factory.models import model_identity
    from factory.rl.checkpoint import read_card

    result, _ = two_worker_run
    card = read_card(result.checkpoint)
    assert card["base"]["identity"] == model_identity(tiny_models.teacher)
    assert card["steps"] == 2 and card["prompts"]["selected"] == 16 and card["rewards"]["weights"]["correctness"] == 1.0
    assert result.identity == model_identity(result.checkpoint)


def test_the_rl_checkpoint_loads_in_vllm_with_its_recorded_identity(two_worker_run):
    result, _ = two_worker_run
    after = result.eval["after"]
    assert after["model"] == result.checkpoint and after["model_identity"] == result.identity
    assert after["samples"] == 8 and after["errors"] == 0 and after["pass_at_1"] is not None


def test_the_run_writes_curves_and_a_report(two_worker_run):
    result, out = two_worker_run
    summary = json.loads((out / "rl_summary.json").read_text())
    assert summary["curves"]["step"] == [1, 2] and len(summary["curves"]["kl"]) == 2
    assert "data:image/png;base64," in Path(result.report).read_text()
