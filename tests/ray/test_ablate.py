"""``factory ablate`` end to end on the tiny kit in a local Ray session: a hand-made generation pool (kept rows
and a dropped side table) committed to a store, two policies × one seed, each student a real Ray Train ×
DeepSpeed run of one epoch, teacher and students scored on 20 held-out problems (the transformers backend keeps
this quick; the ablation's own benchmark uses vLLM), then the paired bootstrap, ``ablation.json``, the HTML
report and the console table."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pyarrow as pa
import yaml

from factory import synthetic
from factory.schema import DATASET_SCHEMA, SCORED_SCHEMA, conform

REPO = Path(__file__).resolve().parents[2]
PROMPTS = 24
HELDOUT = 20


def _pool(root: Path) -> str:
    """Per prompt a correct chain (kept), a slipped one judged wrong and a duplicate of the correct one (dropped)."""
    from factory.rows import to_dataset_rows
    from factory.prompting import PromptingConfig
    from factory.store import SnapshotStore

    rng = random.Random(0)
    kept, dropped = [], []
    for i, p in enumerate(synthetic.make_problems(PROMPTS, seed=11)):
        base = {"prompt_id": p["prompt_id"], "task": "math", "prompt": p["prompt"], "reference": p["reference"],
                "source": "synthetic-train", "source_row": i + 1, "gen_key": "k", "gen_status": "ok",
                "completion_tokens": 60, "pass_rate": 0.5}
        good = synthetic.completion_for(p["prompt"])
        kept.append({**base, "sample_index": 0, "sample_id": f"{p['prompt_id']}:k:0", "completion": good,
                     "verdict": "correct", "reward": 0.9})
        dropped.append({**base, "sample_index": 1, "sample_id": f"{p['prompt_id']}:k:1", "verdict": "wrong",
                        "completion": synthetic.slipped_completion(p["prompt"], rng, 1.0), "reward": 0.1,
                        "drop_stage": "rejection", "drop_reason": "verdict_wrong"})
        dropped.append({**base, "sample_index": 2, "sample_id": f"{p['prompt_id']}:k:2", "verdict": "correct",
                        "completion": good, "reward": 0.8, "drop_stage": "dedup", "drop_reason": "dup_exact_response"})
    store = SnapshotStore(str(root), "ablate-pool")
    with store.begin(schema=DATASET_SCHEMA) as staged:
        staged.write_table(to_dataset_rows(conform(pa.Table.from_pylist(kept), SCORED_SCHEMA), PromptingConfig()))
        staged.write_table(conform(pa.Table.from_pylist(dropped), SCORED_SCHEMA), side="dropped")
        return staged.commit({"note": "ablate test"}).version


def _configs(tmp: Path) -> Path:
    factory = yaml.safe_load((REPO / "configs" / "demo.yaml").read_text())
    factory["store"] = {"root": str(tmp / "datasets"), "dataset": "ablate-pool"}
    factory["generation"]["engine"]["backend"] = "transformers"
    factory["eval"]["max_tokens"] = 96
    (tmp / "factory.yaml").write_text(yaml.safe_dump(factory))
    ablate = {
        "factory": str(tmp / "factory.yaml"),
        "run": {"name": "ablate-test", "work_dir": str(tmp / "runs")},
        "ablate": {"policies": [{"name": "unfiltered", "select": "all"}, {"name": "verified", "select": "verified"}],
                   "seeds": [0], "train": {"epochs": 1, "micro_batch_size": 8, "num_workers": 1, "cpus_per_worker": 1.0},
                   "heldout": [{"name": "heldout", "kind": "synthetic", "task": "math", "synthetic_n": HELDOUT,
                                "synthetic_split": "heldout", "synthetic_seed": 3}],
                   "min_heldout_problems": HELDOUT, "bootstrap": {"resamples": 200}},
    }
    (tmp / "ablate.yaml").write_text(yaml.safe_dump(ablate))
    return tmp / "ablate.yaml"


def test_factory_ablate_trains_and_compares_students_from_one_pool(ray_local, tiny_models, tmp_path, capfd):
    from factory.cli import main

    version = _pool(tmp_path / "datasets")
    assert main(["ablate", str(_configs(tmp_path))]) == 0
    out_lines = capfd.readouterr().out.strip().splitlines()
    path = Path(out_lines[-1])
    assert path == tmp_path / "runs" / "ablate-test" / "ablation.json"
    summary = json.loads(path.read_text())
    assert summary["pool"]["version"] == version and summary["pool"]["eligible_rows"] == 3 * PROMPTS
    policies = summary["policies"]
    assert policies["unfiltered"]["rows"] == 3 * PROMPTS and policies["verified"]["rows"] == 2 * PROMPTS
    assert policies["unfiltered"]["correct_share"] == 2 / 3 and policies["verified"]["correct_share"] == 1.0
    for policy in policies.values():
        (student,) = policy["students"]
        assert student["seed"] == 0 and student["steps"] >= 1 and 0.0 <= student["accuracy"] <= 1.0
        assert (Path(student["checkpoint"]) / "config.json").exists()
    comparison = summary["comparison"]
    assert comparison["problems"] + comparison["problems_excluded"] == HELDOUT
    assert set(comparison["models"]) == {"unfiltered", "verified", "teacher"}
    for model in comparison["models"].values():
        assert model["low"] <= model["mean"] <= model["high"]
    assert set(comparison["differences"]) == {"unfiltered", "teacher"}
    diff = comparison["differences"]["unfiltered"]["verified"]
    assert diff["mean"] == comparison["models"]["verified"]["mean"] - comparison["models"]["unfiltered"]["mean"]
    report = Path(summary["report"]).read_text()
    assert "Held-out accuracy per policy" in report and report.count("<img") == 2
    assert any(line.startswith("verified") and "[" in line for line in out_lines)
    # every model was scored on the same problems, with their outcomes stored for a rerun to reuse
    stored = list((tmp_path / "runs" / "ablate-test" / "eval").glob("*.json"))
    assert len(stored) == 3 and all(len(json.loads(p.read_text())["per_problem"]) == HELDOUT for p in stored)
