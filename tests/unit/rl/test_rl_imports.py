"""The RL modules a driver loads before Ray starts import no heavy library (trl, torch, transformers, ray, ...)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
HEAVY = ["torch", "vllm", "deepspeed", "transformers", "ray", "trl", "accelerate"]


@pytest.mark.parametrize("module", ["factory.rl", "factory.rl.config", "factory.rl.selection", "factory.rl.run",
                                    "factory.rl.worker", "factory.rl.rewards", "factory.rl.checkpoint"])
def test_import_leaves_heavy_libraries_unimported(module):
    code = f"import sys, json, {module}; print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


def test_the_job_entrypoint_runs_the_rl_command():
    out = subprocess.run([sys.executable, str(REPO / "pipelines" / "rl.py"), "--help"], capture_output=True, text=True,
                         check=True)
    assert "--config" in out.stdout and "factory rl" in out.stdout
