"""Property-based tests of prompt ingestion: random bytes and random JSON values, in every supported
format, never crash it. In ``fail`` mode the only exception is PromptValidationError; in ``skip`` mode
every row is either accepted or counted with a reason, and accepted rows hold valid, non-blank text
(a source that cannot be read at all still raises PromptValidationError, naming it)."""

from __future__ import annotations

import gzip
import json
import os
import tempfile

import pyarrow as pa
import pyarrow.parquet as pq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from factory.stages.ingest import ROW_PROBLEMS, PromptsConfig, PromptSource, PromptValidationError, ingest

FIELDS = ("prompt", "id", "answer", "test")
SETTINGS = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
# Any code point, lone surrogates included (JSON writes them as "\udXXX" escapes).
ANY_TEXT = st.text(st.characters(exclude_categories=()), max_size=20)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | ANY_TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(ANY_TEXT, inner, max_size=3),
    max_leaves=8,
)
RECORDS = st.dictionaries(st.sampled_from(FIELDS) | ANY_TEXT, JSON_VALUES, max_size=5)
LINES = st.lists(st.one_of(RECORDS.map(json.dumps), JSON_VALUES.map(json.dumps),
                           st.binary(max_size=40).map(lambda b: b.decode("latin-1"))), max_size=12)


def _source(path: str, kind: str, task: str = "code") -> PromptSource:
    return PromptSource(name="fuzz", kind=kind, path=path, task=task, id_field="id", reference_field="answer",
                        tests_field="test")


def _check(source: PromptSource, rows: int | None) -> None:
    """The properties for one input: ``rows`` is its number of non-blank rows (None: unknown)."""
    try:
        ingest(PromptsConfig(sources=[source], on_bad_row="fail"))
    except PromptValidationError:
        pass
    try:
        result = ingest(PromptsConfig(sources=[source], on_bad_row="skip"))
    except PromptValidationError as err:  # only a source unreadable as a whole may stop skip mode
        assert err.problems[-1].startswith("fuzz: unreadable_source: "), err.problems
        return
    assert {key.removeprefix("ingest:") for key in result.skipped} <= set(ROW_PROBLEMS)
    assert len(result.problems) == sum(result.skipped.values())
    if rows is not None:
        assert result.table.num_rows + len(result.problems) == rows
    for row in result.table.to_pylist():
        for value in (row["prompt"], row["prompt_id"], row["reference"], row["tests"]):
            assert value is None or isinstance(value, str) and value.encode("utf-8")
        assert row["prompt"].strip() and row["prompt_id"].strip() and row["tests"] is not None


def _non_blank(data: bytes) -> int:
    lines = data.split(b"\n")
    lines[0] = lines[0].removeprefix(b"\xef\xbb\xbf")
    return sum(1 for line in lines if line.strip())


@SETTINGS
@given(data=st.binary(max_size=300), bom=st.booleans())
def test_random_bytes_as_jsonl(data, bom):
    with tempfile.TemporaryDirectory() as tmp:
        data = (b"\xef\xbb\xbf" if bom else b"") + data
        path = os.path.join(tmp, "p.jsonl")
        with open(path, "wb") as f:
            f.write(data)
        _check(_source(path, "jsonl"), _non_blank(data))


@SETTINGS
@given(lines=LINES, task=st.sampled_from(["math", "code"]))
def test_random_json_values_as_jsonl(lines, task):
    data = "\n".join(lines).encode("utf-8", "surrogatepass")  # raw lone surrogates too, not only escapes
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "p.jsonl")
        with open(path, "wb") as f:
            f.write(data)
        _check(_source(path, "jsonl", task), _non_blank(data))


@SETTINGS
@given(lines=LINES, corrupt=st.one_of(st.none(), st.integers(min_value=0, max_value=200)))
def test_random_json_values_as_jsonl_gz(lines, corrupt):
    data = "\n".join(lines).encode("utf-8", "surrogatepass")
    packed = gzip.compress(data)
    if corrupt is not None:  # a truncated download
        packed = packed[:corrupt]
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "p.jsonl.gz")
        with open(path, "wb") as f:
            f.write(packed)
        _check(_source(path, "jsonl"), _non_blank(data) if corrupt is None else None)


@SETTINGS
@given(data=st.binary(max_size=300))
def test_random_bytes_as_parquet(data):
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "p.parquet")
        with open(path, "wb") as f:
            f.write(b"PAR1" + data + b"PAR1")
        _check(_source(path, "parquet"), None)


# One Arrow type per column, as Parquet requires; values of that type (and nulls) per row.
COLUMN_TYPES = {
    "string": (pa.string(), st.text(max_size=10)),
    "int64": (pa.int64(), st.integers(min_value=-2**63, max_value=2**63 - 1)),
    "float64": (pa.float64(), st.floats()),
    "bool": (pa.bool_(), st.booleans()),
    "binary": (pa.binary(), st.binary(max_size=10)),
    "list": (pa.list_(pa.string()), st.lists(st.text(max_size=5), max_size=3)),
    "struct": (pa.struct([("a", pa.string())]), st.fixed_dictionaries({"a": st.text(max_size=5)})),
}


@st.composite
def arrow_tables(draw) -> pa.Table:
    rows = draw(st.integers(min_value=0, max_value=8))
    columns = {}
    for name in draw(st.lists(st.sampled_from(FIELDS), unique=True)):
        arrow_type, values = COLUMN_TYPES[draw(st.sampled_from(sorted(COLUMN_TYPES)))]
        columns[name] = pa.array(draw(st.lists(st.none() | values, min_size=rows, max_size=rows)), arrow_type)
    return pa.table(columns) if columns else pa.table({"other": pa.nulls(rows, pa.string())})


@SETTINGS
@given(table=arrow_tables())
def test_random_columns_as_parquet(table):
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "p.parquet")
        pq.write_table(table, path)
        _check(_source(path, "parquet"), table.num_rows)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(table=arrow_tables())
def test_random_columns_as_hf_disk(table):
    from datasets import Dataset

    with tempfile.TemporaryDirectory() as tmp:
        Dataset(table).save_to_disk(os.path.join(tmp, "hf"))
        _check(_source(os.path.join(tmp, "hf"), "hf_disk"), table.num_rows)
