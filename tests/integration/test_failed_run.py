"""A run that fails after Ray has started prints one clear error and the path of its full log, no
traceback, and exits 1; the log holds the traceback. The injected failure: a teacher directory that
exists (so `factory validate` passes) but holds no model."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]


def test_a_failed_run_prints_one_error_and_the_log_path(tmp_path):
    (tmp_path / "empty-teacher").mkdir()
    cfg = {
        "run": {"name": "broken", "work_dir": str(tmp_path / "runs"), "ray": {"num_cpus": 2}},
        "prompts": {"sources": [{"name": "s", "kind": "synthetic", "synthetic_n": 4}]},
        "generation": {"engine": {"model": str(tmp_path / "empty-teacher"), "dtype": "float32", "max_model_len": 256,
                                  "enforce_eager": True}},
        "reward": {"enabled": False},
        "store": {"root": str(tmp_path / "datasets"), "dataset": "broken"},
        "eval": {"enabled": False},
    }
    config = tmp_path / "broken.yaml"
    config.write_text(yaml.safe_dump(cfg))
    proc = subprocess.run([sys.executable, "-m", "factory.cli", "run", str(config)], cwd=REPO, capture_output=True,
                          text=True, timeout=600, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    console = proc.stdout + proc.stderr
    assert proc.returncode == 1, console
    assert "Traceback" not in console and not any(line.startswith("  File ") for line in console.splitlines()), console
    errors = [line for line in console.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, console
    assert "ValueError" in errors[0], errors  # the root cause raised inside the generation actor, in one line
    assert len(console.splitlines()) < 10, console
    log_line = next(line for line in console.splitlines() if "the full log with the traceback:" in line)
    log = Path(log_line.rsplit(": ", 1)[1].strip())
    assert "Traceback" in log.read_text()
