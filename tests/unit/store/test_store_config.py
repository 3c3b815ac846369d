"""StoreConfig validation and documentation; code_version()."""

from __future__ import annotations

import ast
import inspect
import os
from pathlib import Path

import pytest
from pydantic import ValidationError

from factory.config import ConfigError, load_config
from factory.store import SnapshotStore, StoreConfig, code_version
from factory.store import code_revision
from factory.store import config as config_module

DEMO_CONFIG = Path(__file__).resolve().parents[3] / "configs" / "demo.yaml"


@pytest.mark.parametrize("overrides, field", [
    ({"dataset": "../escape"}, "dataset"),
    ({"rows_per_file": 0}, "rows_per_file"),
    ({"row_group_rows": -1}, "row_group_rows"),
    ({"compression": "brotli9"}, "compression"),
    ({"gc_staging_after_s": -1.0}, "gc_staging_after_s"),
    ({"unknown": 1}, "unknown"),
])
def test_invalid_value_names_the_field(overrides, field):
    with pytest.raises(ValidationError, match=field):
        StoreConfig(**{"root": "/tmp/x", "dataset": "d", **overrides})


@pytest.mark.parametrize("root", ["hdfs://namenode/datasets", "az://container/x", "http://host/x", "s3://"])
def test_unsupported_root_uri_fails_validation_naming_store_root(root):
    with pytest.raises(ConfigError, match=r"store\.root: .*(unsupported URI scheme|no valid bucket)"):
        load_config(DEMO_CONFIG, (f"store.root={root}",))


def test_s3_root_is_an_object_store_prefix_not_a_local_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")  # building the clients contacts nothing
    cfg = load_config(DEMO_CONFIG, ("store.root=s3://bucket/x", "store.region=us-east-1")).store
    store = SnapshotStore.from_config(cfg)
    assert (store.layout.base, store.files.scheme) == ("s3://bucket/x/demo-arith", "s3")
    assert os.listdir(tmp_path) == []


def test_gs_root_is_accepted():
    assert StoreConfig(root="gs://bucket/prefix", dataset="d").root == "gs://bucket/prefix"


def test_file_uri_root_is_a_local_directory(tmp_path):
    store = SnapshotStore(f"file://{tmp_path}", "d")
    assert (store.layout.base, store.files.scheme) == (str(tmp_path / "d"), "local")


def test_plain_http_endpoint_needs_allow_http():
    with pytest.raises(ValidationError, match="allow_http"):
        StoreConfig(root="s3://bucket/x", dataset="d", endpoint_url="http://127.0.0.1:9000")
    assert StoreConfig(root="s3://bucket/x", dataset="d", endpoint_url="http://127.0.0.1:9000", allow_http=True)


def test_row_groups_larger_than_files_are_rejected():
    with pytest.raises(ValidationError, match="row_group_rows"):
        StoreConfig(root="/tmp/x", dataset="d", rows_per_file=10, row_group_rows=20)


def test_every_field_has_a_docstring():
    tree = ast.parse(inspect.getsource(config_module.StoreConfig))
    body = tree.body[0].body

    def documented(i: int) -> bool:
        after = body[i + 1] if i + 1 < len(body) else None
        return isinstance(after, ast.Expr) and isinstance(after.value, ast.Constant)

    fields = [(i, node.target.id) for i, node in enumerate(body) if isinstance(node, ast.AnnAssign)]
    assert [name for i, name in fields if not documented(i)] == []


def test_store_from_config_uses_its_write_options(tmp_path):
    cfg = StoreConfig(root=str(tmp_path), dataset="d", rows_per_file=7, row_group_rows=3, compression="snappy")
    store = SnapshotStore.from_config(cfg)
    assert (store.options.rows_per_file, store.options.row_group_rows, store.options.compression) == (7, 3, "snappy")


def test_code_version_names_git_or_package():
    assert code_version().startswith(("git:", "distill-factory=="))


def test_code_version_falls_back_to_package_version_without_git(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    code_revision.code_version.cache_clear()
    try:
        assert code_revision.code_version() == "distill-factory==0.1.0"
    finally:
        code_revision.code_version.cache_clear()
