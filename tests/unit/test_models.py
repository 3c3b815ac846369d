"""Model identity (breaker 3) under the conditions a cluster produces: a model directory re-staged in
place with a retrained model (same file names and sizes, as every retrain of one architecture has),
by tools that keep timestamps (a tar with normalised mtimes, ``cp -p`` over the old files), and the
FINGERPRINT file ``cluster/stage_models.sh`` writes at staging time."""

from __future__ import annotations

import io
import json
import os
import subprocess
import tarfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from safetensors.numpy import save_file

from factory.models import ModelIdentityError, directory_fingerprint, file_sha256, model_identity

REPO = Path(__file__).resolve().parents[2]
STAGE = REPO / "cluster" / "stage_models.sh"
EPOCH = 1_700_000_000  # the normalised mtime of reproducible archives and image layers


@pytest.fixture
def identity_cache(tmp_path, monkeypatch):
    """A digest cache of the test's own (the tiny models stay in the real FACTORY_CACHE)."""
    monkeypatch.setenv("FACTORY_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _trained(seed: int, scratch: Path) -> dict[str, bytes]:
    """A model directory's files after a training run: same names and sizes for every seed."""
    weights = {"embed.weight": np.random.default_rng(seed).standard_normal((64, 32)).astype(np.float32)}
    save_file(weights, str(scratch / f"weights-{seed}.safetensors"))
    return {"model.safetensors": (scratch / f"weights-{seed}.safetensors").read_bytes(),
            "config.json": b'{"hidden_size": 32}', "tokenizer.json": b'{"model": {"vocab": {}}}'}


def _archive(files: dict[str, bytes], path: Path) -> Path:
    with tarfile.open(path, "w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mtime = len(data), EPOCH
            tar.addfile(info, io.BytesIO(data))
    return path


def _stage(tmp_path: Path, seed: int, directory: Path) -> None:
    """Unpack training run ``seed``'s files into ``directory`` (in place) from an archive with normalised mtimes."""
    archive = _archive(_trained(seed, tmp_path), tmp_path / f"v{seed}.tar")
    directory.mkdir(exist_ok=True)
    subprocess.run(["tar", "-xf", str(archive), "-C", str(directory)], check=True)


def _old_reuse_key(directory: Path) -> list:
    """What evaluate.result_key hashed for a local model before model identities: names, sizes, mtimes."""
    return sorted((f.name, f.stat().st_size, f.stat().st_mtime_ns) for f in directory.iterdir() if f.is_file())


def test_identity_of_a_directory_is_a_stable_content_fingerprint(tmp_path, identity_cache):
    model = tmp_path / "model"
    _stage(tmp_path, 0, model)
    first = model_identity(str(model))
    assert first.startswith("sha256:") and len(first) == len("sha256:") + 64
    assert model_identity(str(model)) == first
    os.environ["FACTORY_CACHE"] = str(tmp_path / "fresh-cache")
    assert model_identity(str(model)) == first  # the same bytes, computed from scratch


def test_restaging_a_retrained_model_in_place_changes_the_identity(tmp_path, identity_cache):
    model = tmp_path / "model"
    _stage(tmp_path, 0, model)
    before, old_key = model_identity(str(model)), _old_reuse_key(model)
    _stage(tmp_path, 1, model)
    assert _old_reuse_key(model) == old_key  # names, sizes and (normalised) mtimes: the old key misses it
    assert model_identity(str(model)) != before


def test_copy_keeping_mtime_over_the_old_files_changes_the_identity(tmp_path, identity_cache):
    model, retrained = tmp_path / "model", tmp_path / "retrained"
    _stage(tmp_path, 0, model)
    _stage(tmp_path, 1, retrained)
    before = model_identity(str(model))
    inodes = {f.name: f.stat().st_ino for f in model.iterdir()}
    subprocess.run(["cp", "-p", *[str(f) for f in retrained.iterdir()], str(model)], check=True)
    assert {f.name: f.stat().st_ino for f in model.iterdir()} == inodes  # rewritten in place: same inodes
    assert _old_reuse_key(model) == _old_reuse_key(retrained)
    assert model_identity(str(model)) == model_identity(str(retrained)) != before


def test_eval_reuse_key_changes_when_the_model_is_restaged(tmp_path, identity_cache):
    from factory.evaluate import result_key
    from config_helpers import make_config

    cfg = make_config(eval={"heldout": [{"name": "h", "kind": "synthetic", "synthetic_n": 2}]})
    prompts = pa.table({"prompt_id": ["p1"], "prompt": ["q"]})
    model = tmp_path / "model"
    _stage(tmp_path, 0, model)
    before = result_key(cfg, str(model), prompts, student=True)
    _stage(tmp_path, 1, model)
    assert result_key(cfg, str(model), prompts, student=True) != before


def test_digests_are_cached_by_file_stat(tmp_path, identity_cache):
    model = tmp_path / "model"
    _stage(tmp_path, 0, model)
    model_identity(str(model))
    (cache_file,) = (identity_cache / "model-identity").iterdir()
    record = json.loads(cache_file.read_text())
    assert record["files"]["model.safetensors"]["sha256"] == file_sha256(model / "model.safetensors")
    true_identity = model_identity(str(model))
    record["files"]["model.safetensors"]["sha256"] = "0" * 64  # fault injection: the cache is believed ...
    cache_file.write_text(json.dumps(record))
    assert model_identity(str(model)) != true_identity
    (model / "model.safetensors").write_bytes((model / "model.safetensors").read_bytes())  # ... until a write
    assert model_identity(str(model)) == true_identity


def test_staging_script_fingerprint_matches_and_is_trusted_while_files_are_unchanged(tmp_path, identity_cache):
    model = tmp_path / "model"
    _stage(tmp_path, 0, model)
    (model / "README.md").write_text("not part of the identity")
    printed = subprocess.run(["bash", str(STAGE), "--fingerprint", str(model)], check=True, capture_output=True,
                             text=True).stdout.strip()
    assert printed == model_identity(str(model))
    os.environ["FACTORY_CACHE"] = str(tmp_path / "unused-cache")
    staged = (model / "FINGERPRINT").read_text()
    (model / "FINGERPRINT").write_text(staged.replace(file_sha256(model / "config.json"), "1" * 64))
    assert model_identity(str(model)) != printed  # fault injection: the staged digests were used, no hashing
    assert not (tmp_path / "unused-cache").exists()


def test_staged_fingerprint_is_ignored_once_the_model_is_restaged(tmp_path, identity_cache):
    model = tmp_path / "model"
    _stage(tmp_path, 0, model)
    staged = subprocess.run(["bash", str(STAGE), "--fingerprint", str(model)], check=True, capture_output=True,
                            text=True).stdout.strip()
    _stage(tmp_path, 1, model)  # FINGERPRINT left stale
    assert model_identity(str(model)) != staged


def test_pinned_hub_model_is_its_revision():
    assert model_identity("org/model", "0" * 40) == "org/model@" + "0" * 40


def test_unpinned_hub_model_is_its_cached_snapshot_fingerprint(tmp_path, identity_cache, monkeypatch):
    hub = tmp_path / "hub"
    commit = "a" * 40
    snapshot = hub / "models--org--model" / "snapshots" / commit
    snapshot.mkdir(parents=True)
    (hub / "models--org--model" / "refs").mkdir()
    (hub / "models--org--model" / "refs" / "main").write_text(commit)
    for name, data in _trained(0, tmp_path).items():
        (snapshot / name).write_bytes(data)
    monkeypatch.setenv("HF_HUB_CACHE", str(hub))
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(hub))
    assert model_identity("org/model") == directory_fingerprint(snapshot)


@pytest.mark.parametrize("name", ["org/never-downloaded", "/mnt/factory/models/not-staged-here"])
def test_model_without_any_identity_is_an_error_never_null(name):
    with pytest.raises(ModelIdentityError, match="set its revision or stage it"):
        model_identity(name)


def test_directory_without_model_files_is_an_error(tmp_path, identity_cache):
    (tmp_path / "README.md").write_text("empty")
    with pytest.raises(ModelIdentityError, match="no model files"):
        model_identity(str(tmp_path))


def test_tiny_models_get_fingerprints(tiny_models):
    assert model_identity("tiny:student") == model_identity(tiny_models.student)
    assert model_identity("tiny:student").startswith("sha256:")
    assert model_identity("tiny:student") != model_identity("tiny:teacher")
