"""The GPU check (benchmarks/gpu_train_step.py) runs on an image with torch and transformers only:
its CPU smoke mode completes with ray, vllm, pyarrow and pydantic unimportable, and without
importing DeepSpeed unless asked to."""

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[3] / "benchmarks" / "gpu_train_step.py"
BLOCKED = ["ray", "vllm", "pyarrow", "pydantic"]
RUNNER = f"""
import runpy, sys
sys.modules.update(dict.fromkeys({BLOCKED!r}))  # None: "import ray" raises ImportError
sys.argv = [{str(SCRIPT)!r}, "--tiny", "--steps", "1", "--warmup", "0"]
try:
    runpy.run_path(sys.argv[0], run_name="__main__")
except SystemExit as done:
    assert done.code == 0, done.code
print("deepspeed imported:", "deepspeed" in sys.modules and sys.modules["deepspeed"] is not None)
"""


def test_gpu_check_runs_without_ray_vllm_pyarrow_or_pydantic():
    out = subprocess.run([sys.executable, "-c", RUNNER], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    rows = [json.loads(line) for line in out.stdout.splitlines() if line.startswith('{"tokens"')]
    assert [r["tokens"] for r in rows] == [256, 512] and all(r["tokens_per_s"] > 0 for r in rows)
    assert out.stdout.strip().endswith("deepspeed imported: False")
