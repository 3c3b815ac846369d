"""What a refresh hands the scoring stages when it re-checks carried rows."""

from __future__ import annotations

import pyarrow as pa

from factory.reuse import _cleared
from factory.schema import DATASET_SCHEMA


def _committed() -> pa.Table:
    """One committed row: every dataset column, null where the test does not care."""
    values = {"prompt_id": "p", "task": "math", "prompt": "What is 1+2+3?", "source": "s", "sample_id": "p:0",
              "completion": "x", "verdict": "correct", "verifier": "math@1", "format_ok": True, "reward": 0.5}
    return pa.Table.from_pylist([{f.name: values.get(f.name) for f in DATASET_SCHEMA}], schema=DATASET_SCHEMA)


def test_rechecked_rows_lose_their_scores_and_drop_marks():
    out = _cleared(_committed())
    assert not {"verdict", "reward", "pass_rate"} & set(out.column_names)
    assert out["drop_reason"].null_count == 1


def test_adaptive_rechecks_keep_the_verdicts_the_generation_loop_gave():
    out = _cleared(_committed(), keep_verdicts=True)
    assert out["verdict"].to_pylist() == ["correct"] and out["format_ok"].to_pylist() == [True]
    assert "reward" not in out.column_names
