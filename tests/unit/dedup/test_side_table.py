"""Signature side table: round trip and parameter checks."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

import pyarrow.parquet as pq

from factory.dedup.side_table import SignatureParams, checked, side_rows, text_signatures, with_params

PARAMS = SignatureParams(num_perm=32, seed=1, shingle="word", ngram=3)
BATCH = pa.table(
    {
        "prompt_id": ["p1", "p1", "p2"],
        "sample_id": ["p1:0", "p1:1", "p2:0"],
        "prompt": ["what is two plus two", "what is two plus two", "name a prime number"],
        "completion": ["four", "it is four", None],
        "drop_reason": [None, "too_long", None],
    }
)


def test_side_rows_cover_kept_prompts_and_responses_only():
    rows = side_rows(BATCH, PARAMS)
    assert sorted(zip(rows["kind"].to_pylist(), rows["id"].to_pylist())) == [
        ("prompt", "p1"), ("prompt", "p2"), ("response", "p1:0")
    ]


def test_round_trip_through_parquet_keeps_signatures_and_parameters(tmp_path):
    pq.write_table(with_params(side_rows(BATCH, PARAMS), PARAMS), tmp_path / "s.parquet")
    table = checked(pq.read_table(tmp_path / "s.parquet"), PARAMS, "s.parquet")
    prompt = table.filter(pa.compute.equal(table["id"], "p2"))
    stored = np.array(prompt["signature"].to_pylist()[0], dtype=np.uint32)
    assert np.array_equal(stored, text_signatures(["name a prime number"], PARAMS)[0])


@pytest.mark.parametrize("field,value", [("num_perm", 64), ("seed", 2), ("shingle", "char"), ("ngram", 5)])
def test_read_refuses_other_signature_parameters_naming_them(tmp_path, field, value):
    pq.write_table(with_params(side_rows(BATCH, PARAMS), PARAMS), tmp_path / "s.parquet")
    other = SignatureParams(**{**PARAMS.__dict__, field: value})
    with pytest.raises(ValueError, match=field):
        checked(pq.read_table(tmp_path / "s.parquet"), other, "s.parquet")
