"""Training-step throughput: our Ray Train × DeepSpeed path vs a plain single-process torch loop.

Both train the same student on the same planned global batches (same packing, loss, optimizer and
schedule); tokens/s counts non-pad tokens of the timed optimizer steps only (model load, Ray start,
data planning and checkpoint writes excluded; both include their first, slower step). With one worker and one thread each, the ratio is the framework overhead of a step (goal:
plain/ours <= 1.2). Prints both figures and the ratio.

    .venv/bin/python benchmarks/bench_train_step.py [--student tiny:student] [--steps 30] [--zero-stage 2]
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
from pathlib import Path


def write_data(directory: Path, tokenizer_path: str, n: int) -> list[str]:
    import pyarrow as pa
    import pyarrow.parquet as pq
    from transformers import AutoTokenizer

    from factory import synthetic, tiny
    from factory.schema import DATASET_SCHEMA, conform

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_path)
    rng = random.Random(0)
    rows = []
    for i, problem in enumerate(synthetic.make_problems(n, seed=11)):
        user = synthetic.user_message(problem["prompt"])
        rows.append({"prompt_id": f"p{i}", "task": "math", "prompt": user, "source": "bench", "source_row": i + 1,
                     "sample_index": 0, "sample_id": f"p{i}:b:0", "gen_key": "b", "gen_status": "ok",
                     "prompt_text": tiny.chat_prompt(tokenizer, user), "completion": synthetic.completion_for(problem["prompt"]),
                     "messages": [{"role": "user", "content": user},
                                  {"role": "assistant", "content": "<think>\n" + synthetic.completion_for(problem["prompt"])}],
                     "pass_rate": rng.random()})
    path = directory / "part-00000.parquet"
    pq.write_table(conform(pa.Table.from_pylist(rows), DATASET_SCHEMA), path)
    return [str(path)]


def main(argv: list[str] | None = None) -> int:
    import ray
    import torch

    from factory.models import resolve_model
    from factory.train import TrainConfig, run_training
    from factory.train.reference import encode_files, replay
    from factory.train.run import plan_data

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--student", default="tiny:student")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--zero-stage", type=int, default=2)
    parser.add_argument("--max-seq-len", type=int, default=256)
    args = parser.parse_args(argv)
    student = resolve_model(args.student)
    cfg = TrainConfig(student=student, num_workers=1, cpus_per_worker=1, zero_stage=args.zero_stage, lr=1e-4,
                      micro_batch_size=4, grad_accum=1, max_seq_len=args.max_seq_len, packing=True, max_steps=args.steps,
                      epochs=50)
    with tempfile.TemporaryDirectory() as tmp:
        files = write_data(Path(tmp), student, n=200)
        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
        try:
            ours = run_training(cfg, files, str(Path(tmp) / "run"))
            plan, _ = plan_data(cfg, files, student)
        finally:
            ray.shutdown()
        metrics = json.loads((Path(tmp) / "run" / "metrics.json").read_text())
        torch.set_num_threads(1)
        plain = replay(cfg, student, plan, encode_files(files, student))
    ours_tps = ours.tokens_per_s
    plain_tps = plain.tokens_per_s
    print(json.dumps({"steps": ours.steps, "ours_tokens_per_s": round(ours_tps, 1), "plain_torch_tokens_per_s": round(plain_tps, 1),
                      "overhead_ratio_plain_over_ours": round(plain_tps / ours_tps, 3), "ours_train_s": round(metrics["train_s"], 2),
                      "plain_train_s": round(plain.train_s, 2), "ours_wall_s": round(ours.wall_s, 1)}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
