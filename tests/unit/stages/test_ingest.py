"""Prompt ingestion: stable ids, validation with row numbers, fail vs skip."""

from __future__ import annotations

import gzip
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from factory.stages.ingest import PromptsConfig, PromptSource, PromptValidationError, content_id, ingest


def _jsonl(path, lines: list[bytes]):
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def _cfg(path, on_bad_row="fail", **kw) -> PromptsConfig:
    src = PromptSource(name="s", kind="jsonl", path=str(path), **kw)
    return PromptsConfig(sources=[src], on_bad_row=on_bad_row)


def test_content_id_is_stable_and_depends_on_task_and_text():
    assert content_id("math", "1+1") == content_id("math", "1+1")
    assert content_id("math", "1+1") != content_id("code", "1+1")
    assert content_id("math", "1+1") != content_id("math", "1+2")


def test_given_id_is_kept(tmp_path):
    path = _jsonl(tmp_path / "p.jsonl", [b'{"id": "a1", "prompt": "x"}'])
    assert ingest(_cfg(path, id_field="id")).table.column("prompt_id").to_pylist() == ["a1"]


def test_missing_id_is_content_hash(tmp_path):
    path = _jsonl(tmp_path / "p.jsonl", [b'{"prompt": "y"}'])
    assert ingest(_cfg(path)).table.column("prompt_id").to_pylist() == [content_id("math", "y")]


def test_row_without_the_configured_id_field_is_bad(tmp_path):
    path = _jsonl(tmp_path / "p.jsonl", [b'{"id": "a1", "prompt": "x"}', b'{"prompt": "y"}'])
    with pytest.raises(PromptValidationError, match="row 2: missing_field: id"):
        ingest(_cfg(path, id_field="id"))


@pytest.mark.parametrize(
    "line, reason",
    [
        (b'{"prompt": ""}', "empty_prompt"),
        (b'{"prompt": "   "}', "empty_prompt"),
        (b'{"question": "x"}', "missing_field: prompt"),
        (b'{"prompt": "\xff\xfe bad"}', "invalid_utf8"),
        (b'{"prompt": ', "invalid_json"),
        (b'[1, 2]', "invalid_json"),
    ],
)
def test_bad_row_is_reported_with_its_row_number(tmp_path, line, reason):
    path = _jsonl(tmp_path / "p.jsonl", [b'{"prompt": "fine"}', line])
    with pytest.raises(PromptValidationError) as err:
        ingest(_cfg(path))
    assert f"s row 2: {reason}" in str(err.value)


def test_duplicate_ids_are_reported_with_both_rows(tmp_path):
    path = _jsonl(tmp_path / "p.jsonl", [b'{"prompt": "same"}', b'{"prompt": "other"}', b'{"prompt": "same"}'])
    with pytest.raises(PromptValidationError, match=r"row 3: duplicate_id: .*first at s row 1"):
        ingest(_cfg(path))


def test_skip_mode_drops_bad_rows_with_counted_reasons(tmp_path):
    path = _jsonl(tmp_path / "p.jsonl", [b'{"prompt": "a"}', b'{"prompt": ""}', b'{"prompt": "a"}', b'{"prompt": "b"}'])
    result = ingest(_cfg(path, on_bad_row="skip"))
    assert result.table.column("prompt").to_pylist() == ["a", "b"]
    assert result.skipped == {"ingest:empty_prompt": 1, "ingest:duplicate_id": 1}
    assert result.table.column("source_row").to_pylist() == [1, 4]


def test_gsm8k_reference_is_the_text_after_hashes(shared_data):
    src = PromptSource(name="gsm8k", kind="jsonl", path=str(shared_data / "gsm8k" / "test.jsonl"), prompt_field="question",
                       reference_field="answer", reference_format="gsm8k", limit=50)
    table = ingest(PromptsConfig(sources=[src])).table
    assert table.num_rows == 50
    assert all(r.replace("-", "").replace(".", "").isdigit() for r in table.column("reference").to_pylist())


def test_humaneval_gz_reads_tests_and_entry_point(shared_data):
    src = PromptSource(name="he", kind="jsonl", path=str(shared_data / "humaneval" / "HumanEval.jsonl.gz"), task="code",
                       id_field="task_id", tests_field="test", entry_point_field="entry_point")
    table = ingest(PromptsConfig(sources=[src])).table
    assert table.num_rows == 164
    first = table.slice(0, 1).to_pylist()[0]
    assert first["prompt_id"] == "HumanEval/0" and first["entry_point"] and "def check" in first["tests"]


def test_parquet_and_jsonl_give_the_same_rows(tmp_path):
    records = [{"prompt": f"q{i}", "ref": str(i)} for i in range(5)]
    pq.write_table(pa.Table.from_pylist(records), tmp_path / "p.parquet")
    _jsonl(tmp_path / "p.jsonl", [json.dumps(r).encode() for r in records])
    a = ingest(PromptsConfig(sources=[PromptSource(name="s", kind="parquet", path=str(tmp_path / "p.parquet"), reference_field="ref")]))
    b = ingest(PromptsConfig(sources=[PromptSource(name="s", kind="jsonl", path=str(tmp_path / "p.jsonl"), reference_field="ref")]))
    assert a.table.equals(b.table)


def test_hf_datasets_directory_is_read(tmp_path):
    from datasets import Dataset

    Dataset.from_list([{"prompt": "q1"}, {"prompt": "q2"}]).save_to_disk(str(tmp_path / "hf"))
    table = ingest(PromptsConfig(sources=[PromptSource(name="hf", kind="hf_disk", path=str(tmp_path / "hf"))])).table
    assert table.column("prompt").to_pylist() == ["q1", "q2"]


def test_synthetic_source_is_deterministic_with_ids_and_references():
    cfg = PromptsConfig(sources=[PromptSource(name="syn", kind="synthetic", synthetic_n=20, synthetic_seed=3)])
    table = ingest(cfg).table
    assert table.equals(ingest(cfg).table)
    assert all(i.startswith("syn-") for i in table.column("prompt_id").to_pylist())
    assert all(r is not None and r.isdigit() for r in table.column("reference").to_pylist())


def test_missing_file_names_the_source(tmp_path):
    with pytest.raises(FileNotFoundError, match="prompt source 's'"):
        ingest(_cfg(tmp_path / "nope.jsonl"))


def test_gzip_jsonl_is_supported(tmp_path):
    path = tmp_path / "p.jsonl.gz"
    with gzip.open(path, "wb") as f:
        f.write(b'{"prompt": "zipped"}\n')
    assert ingest(_cfg(path)).table.column("prompt").to_pylist() == ["zipped"]
