"""Ingest through Ray Data (large files): the same rows, ids, problems and row numbers as the driver path,
with the file split into many chunks (one Ray Data task each)."""

from __future__ import annotations

import json
import math

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from factory.stages.ingest import PromptsConfig, PromptSource, PromptValidationError, ingest

ROWS = 3000


def _both(cfg: PromptsConfig, chunk_bytes: int):
    on_ray = ingest(cfg, ray_min_bytes=0, chunk_bytes=chunk_bytes)
    assert not isinstance(on_ray.data, pa.Table)  # the Ray Data path was taken
    return on_ray, ingest(cfg, ray_min_bytes=math.inf)


def test_jsonl_in_ray_data_names_the_true_line(tmp_path, ray_local):
    lines = [json.dumps({"id": f"q{i}", "question": f"What is {i} + {i}?", "answer": str(2 * i)}) for i in range(ROWS)]
    lines[1200] = ""  # a blank line: counted in line numbers, not a row
    lines[2344] = '{"id": "broken", "question": '  # line 2345
    lines[2900] = json.dumps({"id": "q7", "question": "again", "answer": "1"})  # line 2901: duplicate of line 8
    path = tmp_path / "prompts.jsonl"
    path.write_text("\n".join(lines) + "\n")
    source = PromptSource(name="big", kind="jsonl", path=str(path), id_field="id", prompt_field="question",
                          reference_field="answer")
    on_ray, on_driver = _both(PromptsConfig(sources=[source], on_bad_row="skip"), chunk_bytes=8192)
    assert on_ray.problems == on_driver.problems
    assert [problem.split(": Expecting")[0] for problem in on_ray.problems] == [
        "big row 2345: invalid_json", "big row 2901: duplicate_id: q7 (first at big row 8)"]
    assert on_ray.skipped == on_driver.skipped == {"ingest:invalid_json": 1, "ingest:duplicate_id": 1}
    assert on_ray.num_rows == on_driver.num_rows == ROWS - 3
    assert on_ray.table.equals(on_driver.table)
    with pytest.raises(PromptValidationError, match="big row 2345: invalid_json"):
        ingest(PromptsConfig(sources=[source]), ray_min_bytes=0, chunk_bytes=8192)


def test_parquet_in_ray_data_names_the_true_row(tmp_path, ray_local):
    prompts = [f"What is {i} times 3?" for i in range(ROWS)]
    prompts[1776] = " "  # row 1777
    pq.write_table(pa.table({"prompt": prompts, "ref": [str(3 * i) for i in range(ROWS)]}), tmp_path / "p.parquet",
                   row_group_size=250)
    source = PromptSource(name="pq", kind="parquet", path=str(tmp_path / "p.parquet"), reference_field="ref")
    on_ray, on_driver = _both(PromptsConfig(sources=[source], on_bad_row="skip"), chunk_bytes=4096)
    assert on_ray.problems == on_driver.problems == ["pq row 1777: empty_prompt: prompt"]
    assert on_ray.table.equals(on_driver.table)
    assert on_ray.table.column("source_row")[-1].as_py() == ROWS
    with pytest.raises(PromptValidationError, match="pq row 1777: empty_prompt: prompt"):
        ingest(PromptsConfig(sources=[source]), ray_min_bytes=0, chunk_bytes=4096)
