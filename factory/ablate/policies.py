"""Data policies as selections over one generation pool, and writing each policy's training rows.

The pool is one committed snapshot: its kept rows and its ``dropped`` side table together hold every
sample the teacher generated, with its verdict, reward, and (for dropped rows) the stage and reason that
dropped it. Selection runs on a few small columns on the driver (:data:`POOL_COLUMNS`); the rows
themselves are then streamed batch by batch from the snapshot's files into each policy's Parquet file
(:func:`write_policy`), so no full copy of the pool is ever held in memory.

Every policy leaves out the same rows first (:func:`eligible`): samples without a response
(infrastructure failures, empty completions), rows decontamination dropped (eval-set leakage is never a
data policy) and rows whose problem text is one of the ablation's held-out problems. Then:

- ``all`` (unfiltered): every eligible sample, wrong and filtered ones included;
- ``verified``: verdict ``correct``;
- ``rm_best``: per prompt, the ``rm_top_k`` correct samples with the highest reward (ties by sample id),
  optionally only those with ``reward >= min_reward``; samples without a reward are never chosen;
- ``dedup``: the snapshot's kept rows (correct, past every filter and the dedup stage).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from factory.ablate.config import PolicySpec

POOL_COLUMNS = ["sample_id", "prompt_id", "prompt", "verdict", "reward", "gen_status", "completion_tokens",
                "drop_stage"]
"""What selection reads of every pool row (plus ``kept``, added by :func:`pool_index`)."""
POOL_SCHEMA = pa.schema([("sample_id", pa.string()), ("prompt_id", pa.string()), ("prompt", pa.string()),
                         ("verdict", pa.string()), ("reward", pa.float64()), ("gen_status", pa.string()),
                         ("completion_tokens", pa.int64()), ("drop_stage", pa.string()), ("kept", pa.bool_())])
"""The selection table's types (the kept rows and the side table may differ in nullability and widths)."""
CONTAMINATION_STAGES = ("decontam", "decontam_prompts")
"""Drop stages whose rows no policy trains on."""


def pool_index(snapshot) -> pa.Table:
    """The selection columns of every pool row (kept rows first), with ``kept`` (bool): whether the row is
    one of the snapshot's data rows rather than the dropped side table's."""
    kept = snapshot.read(columns=[c for c in POOL_COLUMNS if c != "drop_stage"])
    kept = kept.append_column("drop_stage", pa.nulls(kept.num_rows, pa.string()))
    parts = [kept.append_column("kept", pa.array(np.ones(kept.num_rows, bool)))]
    if "dropped" in snapshot.side_tables():
        present = [c for c in POOL_COLUMNS if c in snapshot.to_arrow_dataset(side="dropped").schema.names]
        dropped = snapshot.read_side("dropped", columns=present)
        if "drop_stage" not in present:  # a side table written without the filter columns
            dropped = dropped.append_column("drop_stage", pa.nulls(dropped.num_rows, pa.string()))
        parts.append(dropped.append_column("kept", pa.array(np.zeros(dropped.num_rows, bool))))
    return pa.concat_tables([p.select(POOL_SCHEMA.names).cast(POOL_SCHEMA) for p in parts])


def eligible(pool: pa.Table, heldout_prompts: set[str]) -> tuple[pa.Table, dict[str, int]]:
    """The rows any policy may train on, and how many were left out for each reason (module docstring)."""
    no_response = pc.or_kleene(pc.not_equal(pool["gen_status"], "ok"),
                               pc.less_equal(pc.fill_null(pool["completion_tokens"], 1), 0))
    no_response = pc.fill_null(no_response, True)
    contaminated = pc.fill_null(pc.is_in(pool["drop_stage"], pa.array(CONTAMINATION_STAGES)), False)
    in_heldout = pc.is_in(pool["prompt"], pa.array(sorted(heldout_prompts), pa.string()))
    reasons = {"no_response": no_response, "contaminated": contaminated, "heldout_problem": in_heldout}
    left_out = {name: int(pc.sum(mask.cast(pa.int64())).as_py() or 0) for name, mask in reasons.items()}
    keep = pc.invert(pc.or_(pc.or_(no_response, contaminated), in_heldout))
    return pool.filter(keep), left_out


def select(pool: pa.Table, spec: PolicySpec) -> pa.Table:
    """The eligible pool rows ``spec`` trains on (module docstring), sorted by sample_id."""
    correct = pc.fill_null(pc.equal(pool["verdict"], "correct"), False)
    if spec.select == "all":
        chosen = pool
    elif spec.select == "verified":
        chosen = pool.filter(correct)
    elif spec.select == "dedup":
        chosen = pool.filter(pool["kept"])
    elif spec.select == "rm_best":
        chosen = _rm_best(pool.filter(pc.and_(correct, pc.is_valid(pool["reward"]))), spec)
    else:  # the config's Literal makes this unreachable
        raise ValueError(f"unknown selection {spec.select!r}")
    return chosen.sort_by("sample_id")


def _rm_best(correct: pa.Table, spec: PolicySpec) -> pa.Table:
    if spec.min_reward is not None:
        correct = correct.filter(pc.greater_equal(correct["reward"], spec.min_reward))
    # highest reward first within each prompt, ties broken by sample id, then the first rm_top_k of each prompt
    ordered = correct.sort_by([("prompt_id", "ascending"), ("reward", "descending"), ("sample_id", "ascending")])
    prompts = ordered["prompt_id"].to_numpy(zero_copy_only=False)
    if len(prompts) == 0:
        return ordered
    starts = np.r_[0, np.flatnonzero(prompts[1:] != prompts[:-1]) + 1]
    rank = np.arange(len(prompts)) - np.repeat(starts, np.diff(np.r_[starts, len(prompts)]))
    return ordered.filter(pa.array(rank < spec.rm_top_k))


def write_policy(snapshot, sample_ids: list[str], out_dir: Path, prompting) -> list[str]:
    """Stream the rows named by ``sample_ids`` out of the snapshot's data files and dropped side table into
    ``out_dir/part-00000.parquet`` (DATASET_SCHEMA, ``messages`` rebuilt for every row with
    :func:`factory.rows.to_dataset_rows` and the pool's prompting, as the commit built them for kept
    rows); returns the file list. An existing file with exactly these rows is kept (a rerun)."""
    from factory.atomic import write_atomic
    from factory.rows import to_dataset_rows
    from factory.schema import DATASET_SCHEMA

    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "part-00000.parquet"
    wanted = pa.array(sorted(set(sample_ids)), pa.string())
    if path.exists() and pq.read_metadata(path).num_rows == len(wanted):
        present = pq.read_table(path, columns=["sample_id"])["sample_id"]
        if pc.all(pc.is_in(present, wanted)).as_py():
            return [str(path)]
    def write(tmp: str) -> None:
        with pq.ParquetWriter(tmp, DATASET_SCHEMA, compression="zstd") as writer:
            for side in (None, "dropped") if "dropped" in snapshot.side_tables() else (None,):
                for batch in snapshot.to_arrow_dataset(side=side).to_batches(batch_size=4096):
                    table = pa.Table.from_batches([batch])
                    table = table.filter(pc.is_in(table["sample_id"], wanted))
                    if table.num_rows:
                        if "messages" in table.column_names:
                            table = table.drop_columns(["messages"])
                        writer.write_table(to_dataset_rows(table, prompting))

    write_atomic(str(path), write)
    return [str(path)]


def pool_prompting(snapshot, fallback):
    """The prompting the pool was generated with (its lineage), else ``fallback`` (the factory config's)."""
    from factory.prompting import PromptingConfig

    recorded = (snapshot.manifest.get("lineage") or {}).get("prompting")
    if isinstance(recorded, dict):
        try:
            return PromptingConfig.model_validate(recorded)
        except ValueError:
            return fallback
    return fallback
