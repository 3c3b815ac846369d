"""StoreConfig validation and documentation; code_version()."""

from __future__ import annotations

import ast
import inspect

import pytest
from pydantic import ValidationError

from factory.store import SnapshotStore, StoreConfig, code_version
from factory.store import code_revision
from factory.store import config as config_module


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
