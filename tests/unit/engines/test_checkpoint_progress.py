"""Checkpoint shards (atomic, idempotent, only deterministic statuses) and progress figures."""

from __future__ import annotations

import os

import pyarrow as pa

from factory import schema
from factory.stages.generate.checkpoint import CheckpointStore
from factory.stages.generate.progress import ProgressState, TokenBudget


def _rows(prompt_ids, status="ok", n=2, key="k"):
    rows = [
        dict(prompt_id=p, task="math", prompt="q", source="s", source_row=1, sample_index=i,
             sample_id=f"{p}:{i}", gen_key=key, gen_status=status)
        for p in prompt_ids
        for i in range(n)
    ]
    return schema.conform(pa.Table.from_pylist(rows), schema.SAMPLE_SCHEMA)


def test_rewriting_same_batch_keeps_one_shard(tmp_path):
    store = CheckpointStore(str(tmp_path), "h" * 64)
    store.write_shard(_rows(["a", "b"]))
    store.write_shard(_rows(["b", "a"]))
    assert len(store.shard_files()) == 1
    assert not [f for f in os.listdir(store.shard_dir) if f.startswith(".tmp-")]


def test_engine_errors_are_not_checkpointed(tmp_path):
    store = CheckpointStore(str(tmp_path), "h" * 64)
    assert store.write_shard(_rows(["a"], status="engine_error")) is None
    store.write_shard(_rows(["b"], status="prompt_too_long"))
    assert set(CheckpointStore(str(tmp_path), "h" * 64).index()) == {("b", "k")}


def test_done_requires_matching_gen_key(tmp_path):
    CheckpointStore(str(tmp_path), "h" * 64).write_shard(_rows(["a"], key="k1"))
    store = CheckpointStore(str(tmp_path), "h" * 64)
    assert store.done("a", "k1") and not store.done("a", "k2") and not store.done("z", "k1")


def test_read_prompt_returns_its_rows_in_sample_order(tmp_path):
    CheckpointStore(str(tmp_path), "h" * 64).write_shard(_rows(["a", "b"], n=3))
    rows = CheckpointStore(str(tmp_path), "h" * 64).read_prompt("b", "k")
    assert rows["prompt_id"].to_pylist() == ["b"] * 3 and rows["sample_index"].to_pylist() == [0, 1, 2]


def _round(prompt_id, first, n, tokens=5):
    table = _rows([prompt_id], n=n)
    return table.set_column(table.column_names.index("sample_index"), "sample_index",
                            pa.array(range(first, first + n), pa.int32())).set_column(
        table.column_names.index("completion_tokens"), "completion_tokens", pa.array([tokens] * n, pa.int32()))


def test_rounds_of_one_prompt_in_several_shards_read_back_as_one_each_sample_once(tmp_path):
    store = CheckpointStore(str(tmp_path), "h" * 64)
    store.write_shard(_round("a", 0, 2))
    store.write_shard(_round("a", 2, 3))
    store.write_shard(pa.concat_tables([_round("a", 4, 1), _round("b", 0, 2)]))  # sample 4 again, with b
    rows = CheckpointStore(str(tmp_path), "h" * 64).read_prompt("a", "k")
    assert rows["sample_index"].to_pylist() == [0, 1, 2, 3, 4] and len(store.shard_files()) == 3


def test_refresh_indexes_shards_written_after_the_index(tmp_path):
    store = CheckpointStore(str(tmp_path), "h" * 64)
    store.write_shard(_round("a", 0, 2))
    assert set(store.index()) == {("a", "k")}
    CheckpointStore(str(tmp_path), "h" * 64).write_shard(_round("b", 0, 2))  # e.g. a predecessor actor
    store.refresh()
    assert set(store.index()) == {("a", "k"), ("b", "k")} and store.spent_tokens() == 20


def test_progress_rates_and_eta():
    now = [0.0]
    state = ProgressState(total_prompts=10, clock=lambda: now[0])
    now[0] = 4.0
    state.add(dict(prompts=4, resumed=2, samples=8, output_tokens=400, prompt_tokens=40, statuses={"ok": 8}))
    stats = state.stats()
    assert (stats["samples_per_s"], stats["output_tokens_per_s"]) == (2.0, 100.0)
    assert stats["eta_s"] == 12.0  # 6 prompts left at 2 generated prompts per 4 s
    assert "4/10 prompts" in state.line()


def _batch(actor, start, finish, latencies, rss, engine_start=None):
    return dict(prompts=2, resumed=0, samples=4, output_tokens=100, prompt_tokens=20, statuses={"ok": 4},
                actor=actor, started_at=start, finished_at=finish, latencies_s=latencies,
                token_latencies_s=[v / 100 for v in latencies], peak_rss_bytes=rss,
                device_bytes=None, engine_start_s=engine_start)


def test_engine_stats_span_actors_and_keep_per_actor_peaks():
    state = ProgressState(total_prompts=6)
    state.add(_batch("a", 100.0, 104.0, [1.0, 2.0], rss=500, engine_start=30.0))
    state.add(_batch("b", 101.0, 110.0, [3.0, 4.0], rss=700, engine_start=35.0))
    state.add(_batch("a", 104.0, 105.0, [5.0, 6.0], rss=600))  # a's peak grew; its start-up was reported once
    state.add(dict(prompts=2, resumed=2, samples=0, output_tokens=0, prompt_tokens=0, statuses={}))  # resumed only
    stats = state.stats()
    assert stats["generation_s"] == 10.0 and stats["engine_output_tokens_per_s"] == 30.0
    assert (stats["latency_p50_s"], stats["latency_p90_s"], stats["latency_mean_s"]) == (3.0, 6.0, 3.5)
    assert stats["token_latency_p50_s"] == 0.03
    assert (stats["peak_rss_bytes_per_actor"], stats["peak_rss_bytes"], stats["actors"]) == (700, 1300, 2)
    assert stats["engine_start_s"] == 35.0 and stats["peak_device_bytes"] is None


def test_engine_stats_are_none_when_nothing_was_generated():
    state = ProgressState(total_prompts=2)
    state.add(dict(prompts=2, resumed=2, samples=0, output_tokens=0, prompt_tokens=0, statuses={}))
    stats = state.stats()
    assert stats["generation_s"] is None and stats["latency_p50_s"] is None and stats["peak_rss_bytes"] is None


def test_budget_grants_what_fits_and_never_overspends():
    budget = TokenBudget(limit=100, spent=10)
    assert budget.reserve(4, max_tokens=20) == 4 and budget.reserve(4, max_tokens=20) == -1  # 10 left, one in flight
    budget.settle(4, max_tokens=20, used_tokens=30)
    assert budget.reserve(4, max_tokens=20) == 3 and budget.spent == 40
    budget.settle(3, max_tokens=20, used_tokens=60)
    assert budget.reserve(1, max_tokens=20) == 0 and budget.spent == 100  # spent, nothing in flight: stop


def test_unbounded_budget_grants_everything():
    assert TokenBudget(None).reserve(7, max_tokens=10**6) == 7


def test_adaptive_stats_sum_rounds_and_stop_reasons_over_batches():
    state = ProgressState(total_prompts=3, budget=TokenBudget(1000, spent=50))
    report = dict(prompts=2, resumed=0, samples=6, output_tokens=60, prompt_tokens=0, statuses={"ok": 6},
                  rounds={0: {"prompts": 2, "samples": 4, "correct": 3, "output_tokens": 40},
                          1: {"prompts": 1, "samples": 2, "correct": 1, "output_tokens": 20}},
                  stop_reasons={"k_reached": 2})
    state.add(report)
    state.add(dict(report, rounds={0: {"prompts": 1, "samples": 2, "correct": 0, "output_tokens": 20}},
                   stop_reasons={"budget": 1}))
    stats = state.stats()
    assert stats["rounds"] == [{"round": 0, "prompts": 3, "samples": 6, "correct": 3, "output_tokens": 60},
                               {"round": 1, "prompts": 1, "samples": 2, "correct": 1, "output_tokens": 20}]
    assert stats["stop_reasons"] == {"budget": 1, "k_reached": 2}
    assert (stats["token_budget"], stats["budget_spent_tokens"]) == (1000, 50)


def test_fixed_n_stats_have_no_round_figures():
    state = ProgressState(total_prompts=1)
    state.add(dict(prompts=1, resumed=0, samples=2, output_tokens=10, prompt_tokens=0, statuses={"ok": 2}))
    assert "rounds" not in state.stats() and "token_budget" not in state.stats()
