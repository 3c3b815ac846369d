"""A small run's ``prompts`` side table and token-length pass run in the driver
(:func:`factory.runtime.runs_in_process`), a large one's in Ray Data tasks: both ways give the same table."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import factory.runtime as runtime
from factory.commit import PROMPT_SAMPLE_COLUMNS, _scratch_dir, write_prompt_table
from factory.store import SnapshotStore
from config_helpers import make_config


@pytest.fixture(params=["in_process", "ray_data"])
def way(request, monkeypatch):
    if request.param == "ray_data":
        monkeypatch.setattr(runtime, "IN_PROCESS_MAX_ROWS", 0)
    return request.param


def test_the_threshold_counts_rows():
    assert runtime.runs_in_process(runtime.IN_PROCESS_MAX_ROWS)
    assert not runtime.runs_in_process(runtime.IN_PROCESS_MAX_ROWS + 1)


class _Sink:
    def __init__(self, rows: int):
        self.counts = {"kept": rows, "dropped": 0}


def test_prompt_table_is_the_same_either_way(ray_local, tmp_path, way):
    verdicts = ["correct", "wrong", None, "correct", "wrong", "wrong"]
    scratch = pa.Table.from_pylist([
        {"prompt_id": f"p{i // 2}", "task": "math", "source": "s", "sample_index": i % 2, "sample_round": 0,
         "verdict": v, "gen_status": "ok" if v else "engine_error", "completion_tokens": 10 * i}
        for i, v in enumerate(verdicts)]).select(list(PROMPT_SAMPLE_COLUMNS))
    cfg = make_config()
    staged = SnapshotStore(str(tmp_path), "d").begin(parent=None)
    pq.write_table(scratch.slice(0, 3), f"{_scratch_dir(staged)}/a.parquet")
    pq.write_table(scratch.slice(3), f"{_scratch_dir(staged)}/b.parquet")
    write_prompt_table(staged, cfg, _Sink(scratch.num_rows))
    table = pq.read_table(staged.side_dir("prompts")).sort_by("prompt_id")
    staged.abort()
    columns = ["prompt_id", "samples", "trials", "correct", "completion_tokens", "difficulty"]
    assert [tuple(row.values()) for row in table.select(columns).to_pylist()] == [
        ("p0", 2, 2, 1, 10, "partial"),
        ("p1", 2, 1, 1, 50, "always"),  # the engine error is no trial
        ("p2", 2, 2, 0, 90, "unsolved"),
    ]


def test_token_lengths_are_the_same_either_way(ray_local, tmp_path, tiny_models, way):
    from factory.train.run import _measure

    files = []
    for part in range(2):
        ids = [f"s{part}{i}" for i in range(3)]
        messages = [[{"role": "user", "content": "What is 2 + 3?"},
                     {"role": "assistant", "content": "<think>\n2 + 3 = 5" + " ok" * i + "</think>\n\\boxed{5}"}]
                    for i in range(3)]
        files.append(str(tmp_path / f"part-{part}.parquet"))
        pq.write_table(pa.table({"sample_id": ids, "messages": messages, "pass_rate": [0.5, None, 1.0]}), files[-1])
    measured = _measure(files, tiny_models.student, None, None)
    assert measured.column("sample_id").to_pylist() == ["s00", "s01", "s02", "s10", "s11", "s12"]
    lengths = measured.column("n_tokens").to_pylist()
    assert lengths[0] < lengths[1] < lengths[2] and lengths[:3] == lengths[3:]
    assert measured.column("pass_rate").to_pylist() == [0.5, None, 1.0] * 2
