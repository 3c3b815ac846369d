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
        (b'[1, 2]', "not_object: the row has type array, not object"),
        (b'"text"', "not_object: the row has type string, not object"),
        (b'{"prompt": null}', "missing_field: prompt is null"),
        (b'{"prompt": 5}', "not_text: prompt has type number"),
        (b'{"prompt": 2.5}', "not_text: prompt has type number"),
        (b'{"prompt": true}', "not_text: prompt has type boolean"),
        (b'{"prompt": ["a"]}', "not_text: prompt has type array"),
        (b'{"prompt": {"text": "a"}}', "not_text: prompt has type object"),
        (b'{"prompt": "a\\ud800b"}', "invalid_text: prompt has an unpaired surrogate U+D800 at character 1"),
        (b'{"prompt": "\\udfff"}', "invalid_text: prompt has an unpaired surrogate U+DFFF"),
        (b'[' * 100_000 + b']' * 100_000, "invalid_json: nested too deeply"),
        (b'{"prompt": "x", "n": ' + b'9' * 5000 + b'}', "invalid_json: Exceeds the limit"),
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


def test_humaneval_gz_reads_tests_and_entry_point(humaneval_file):
    src = PromptSource(name="he", kind="jsonl", path=str(humaneval_file), task="code",
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


@pytest.mark.parametrize("on_bad_row", ["fail", "skip"])
def test_lone_surrogate_is_invalid_text_in_both_modes(tmp_path, on_bad_row):
    path = _jsonl(tmp_path / "p.jsonl", [b'{"prompt": "fine"}', b'{"prompt": "broken \\ud800 pair"}'])
    if on_bad_row == "fail":
        with pytest.raises(PromptValidationError, match="s row 2: invalid_text: prompt has an unpaired surrogate"):
            ingest(_cfg(path))
        return
    result = ingest(_cfg(path, on_bad_row="skip"))
    assert result.table.column("prompt").to_pylist() == ["fine"]
    assert result.skipped == {"ingest:invalid_text": 1}


def test_surrogate_pair_escape_is_one_valid_character(tmp_path):
    path = _jsonl(tmp_path / "p.jsonl", [b'{"prompt": "smile \\ud83d\\ude00"}'])
    assert ingest(_cfg(path)).table.column("prompt").to_pylist() == ["smile \U0001F600"]


@pytest.mark.parametrize("name", ["p.jsonl", "p.jsonl.gz"])
def test_byte_order_mark_at_file_start_is_accepted(tmp_path, name):
    data = b'\xef\xbb\xbf{"prompt": "first"}\n{"prompt": "second"}\n'
    path = tmp_path / name
    path.write_bytes(gzip.compress(data) if name.endswith(".gz") else data)
    assert ingest(_cfg(path)).table.column("prompt").to_pylist() == ["first", "second"]


def test_byte_order_mark_inside_a_file_is_invalid_json(tmp_path):
    path = _jsonl(tmp_path / "p.jsonl", [b'{"prompt": "first"}', b'\xef\xbb\xbf{"prompt": "second"}'])
    with pytest.raises(PromptValidationError, match="s row 2: invalid_json"):
        ingest(_cfg(path))


@pytest.mark.parametrize(
    "record, options, reason",
    [
        ({"prompt": "q", "answer": [1]}, {"reference_field": "answer"}, "not_text: answer has type array"),
        ({"prompt": "q", "answer": "\ud800"}, {"reference_field": "answer"}, "invalid_text: answer"),
        ({"prompt": "q", "answer": True}, {"reference_field": "answer"}, "not_text: answer has type boolean"),
        ({"prompt": "q", "answer": float("nan")}, {"reference_field": "answer"}, "not_text: answer has type number"),
        ({"prompt": "q", "id": {"k": 1}}, {"id_field": "id"}, "not_text: id has type object"),
        ({"prompt": "q", "id": None}, {"id_field": "id"}, "missing_field: id is null"),
        ({"prompt": "q", "id": " "}, {"id_field": "id"}, "empty_field: id"),
        ({"prompt": "q", "id": 1.5}, {"id_field": "id"}, "not_text: id has type number"),
        ({"prompt": "q", "test": 3}, {"task": "code", "tests_field": "test"}, "not_text: test has type number"),
        ({"prompt": "q", "test": None}, {"task": "code", "tests_field": "test"}, "missing_field: test is null"),
        ({"prompt": "q", "test": " "}, {"task": "code", "tests_field": "test"}, "empty_field: test"),
        ({"prompt": "q", "test": "t", "entry": ["f"]}, {"task": "code", "tests_field": "test", "entry_point_field": "entry"},
         "not_text: entry has type array"),
    ],
)
def test_bad_optional_field_names_the_field_and_problem(tmp_path, record, options, reason):
    path = _jsonl(tmp_path / "p.jsonl", [json.dumps(record).encode()])
    with pytest.raises(PromptValidationError) as err:
        ingest(_cfg(path, **options))
    assert f"s row 1: {reason}" in str(err.value)


def test_code_source_without_a_tests_field_ingests_with_no_tests(tmp_path):
    """Only a configured tests field must be non-blank; a code source may leave it unset."""
    table = ingest(_cfg(_jsonl(tmp_path / "p.jsonl", [b'{"prompt": "write f"}']), task="code")).table
    assert table.column("tests").to_pylist() == [None]


def test_integer_ids_and_numeric_references_are_taken_as_their_text(tmp_path):
    path = _jsonl(tmp_path / "p.jsonl", [b'{"id": 17, "prompt": "q", "answer": 42}', b'{"id": 18, "prompt": "r", "answer": 0.5}'])
    table = ingest(_cfg(path, id_field="id", reference_field="answer")).table
    assert table.column("prompt_id").to_pylist() == ["17", "18"]
    assert table.column("reference").to_pylist() == ["42", "0.5"]


def test_binary_parquet_column_is_not_text(tmp_path):
    pq.write_table(pa.table({"prompt": pa.array([b"q1", b"q2"], pa.binary())}), tmp_path / "p.parquet")
    src = PromptSource(name="s", kind="parquet", path=str(tmp_path / "p.parquet"))
    with pytest.raises(PromptValidationError, match="s row 1: not_text: prompt has type binary"):
        ingest(PromptsConfig(sources=[src]))


def test_parquet_row_numbers_run_on_across_record_batches(tmp_path):
    from factory.stages.ingest import READ_BATCH_ROWS

    n = 2 * READ_BATCH_ROWS + 5
    prompts = [f"q{i}" for i in range(n)]
    prompts[READ_BATCH_ROWS + 10] = ""
    pq.write_table(pa.table({"prompt": prompts, "unused": [[i] for i in range(n)]}), tmp_path / "p.parquet",
                   row_group_size=1000)
    src = PromptSource(name="s", kind="parquet", path=str(tmp_path / "p.parquet"))
    result = ingest(PromptsConfig(sources=[src], on_bad_row="skip"))
    assert result.problems == [f"s row {READ_BATCH_ROWS + 11}: empty_prompt: prompt"]
    assert result.table.num_rows == n - 1 and result.table.column("source_row")[-1].as_py() == n


@pytest.mark.parametrize("on_bad_row", ["fail", "skip"])
@pytest.mark.parametrize(
    "name, kind, data",
    [
        ("p.jsonl.gz", "jsonl", b"this is not gzip"),
        ("p.jsonl.gz", "jsonl", gzip.compress(b'{"prompt": "a"}\n{"prompt": "b"}\n' * 50)[:-30]),
        ("p.parquet", "parquet", b"PAR1 not really"),
        ("p.jsonl", "jsonl", '{"prompt": "a"}\n'.encode("utf-16")),
    ],
    ids=["not-gzip", "truncated-gzip", "not-parquet", "utf-16"],
)
def test_unreadable_source_fails_in_both_modes(tmp_path, on_bad_row, name, kind, data):
    path = tmp_path / name
    path.write_bytes(data)
    src = PromptSource(name="s", kind=kind, path=str(path))
    with pytest.raises(PromptValidationError, match="s: unreadable_source: "):
        ingest(PromptsConfig(sources=[src], on_bad_row=on_bad_row))


def test_hf_dataset_dict_directory_says_to_name_a_split(tmp_path):
    from datasets import Dataset, DatasetDict

    DatasetDict({"train": Dataset.from_list([{"prompt": "q"}])}).save_to_disk(str(tmp_path / "hf"))
    src = PromptSource(name="hf", kind="hf_disk", path=str(tmp_path / "hf"))
    with pytest.raises(PromptValidationError, match="DatasetDict; point path at one split"):
        ingest(PromptsConfig(sources=[src]))
