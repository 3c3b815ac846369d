"""docs/dataset-schema.md and dataset cards document every column of DATASET_SCHEMA."""

from __future__ import annotations

from pathlib import Path

import pytest
from store_data import commit_rows

from factory.schema import DATASET_SCHEMA
from factory.store.columns import COLUMN_DOCS
from factory.store.schema_doc import render_schema_doc

DOC = Path(__file__).resolve().parents[3] / "docs" / "dataset-schema.md"


def test_every_column_has_a_description():
    assert [n for n in DATASET_SCHEMA.names if not COLUMN_DOCS.get(n)] == []


def test_descriptions_name_only_real_columns():
    assert sorted(set(COLUMN_DOCS) - set(DATASET_SCHEMA.names)) == []


@pytest.mark.parametrize("column", DATASET_SCHEMA.names)
def test_doc_lists_column(column):
    assert f"| `{column}` |" in DOC.read_text()


def test_doc_is_up_to_date_with_the_schema():
    assert DOC.read_text() == render_schema_doc(), "run: python -m factory.store.schema_doc --write"


def test_card_lists_every_column_and_counts(store):
    card = Path(commit_rows(store, 3).path, "README.md").read_text()
    assert all(f"| `{c}` |" in card for c in DATASET_SCHEMA.names)
    assert "rows: **3**" in card and "| wrong | 2 |" in card and "rm1" in card


def test_card_front_matter_lists_the_data_files(store):
    card = Path(commit_rows(store, 5).path, "README.md").read_text()
    assert "    - part-00000.parquet\n    - part-00001.parquet\n---" in card


def test_custom_card_is_written_unchanged(store):
    with store.begin() as staged:
        staged.write_table(DATASET_SCHEMA.empty_table())
        snapshot = staged.commit({}, card="# hand-written\n")
    assert Path(snapshot.path, "README.md").read_text() == "# hand-written\n"


def test_doc_lists_every_column_of_the_prompts_side_table():
    from factory.stages.generate.policy import PROMPT_TABLE_SCHEMA
    from factory.store.schema_doc import render_schema_doc

    side = render_schema_doc().split("## Side tables", 1)[1]
    assert [name for name in PROMPT_TABLE_SCHEMA.names if f"`{name}`" not in side] == []
