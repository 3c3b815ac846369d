"""Reuse planning: what a run generates, and what it carries over from a parent snapshot (a refresh).

Contract: a prompt's samples are keyed by ``gen_key`` = prompt text × teacher model and revision ×
sampling params × prompt template (``factory.stages.generate.gen_key``). A refresh carries over the
parent snapshot's rows whose ``gen_key`` is still wanted, skips prompts the parent already
generated (kept or dropped), and sends only the rest through generation, scoring, filtering and
dedup — where new rows are deduped against the carried rows' MinHash signatures (side table), not
recomputed. A changed teacher, sampling or template changes every key, so everything is
regenerated; prompts no longer in the sources are not carried. The new snapshot records its parent;
the store's commit fails if another writer published after that parent, so one schedule slot
publishes at most once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from factory.schema import DATASET_SCHEMA


@dataclass
class ReusePlan:
    """What a run generates and what it carries over from its parent."""

    todo: pa.Table
    reused: pa.Table
    parent_version: str | None
    prior_signatures: list[str] | None = None
    counts: dict = field(default_factory=dict)

    def summary(self) -> dict:
        return {"parent": self.parent_version, **self.counts}


def wanted_keys(cfg, prompts: pa.Table) -> list[str]:
    from factory.stages.generate import gen_key, generation_config_hash

    config_hash = generation_config_hash(cfg.generation)
    return [gen_key(config_hash, p) for p in prompts.column("prompt").to_pylist()]


def _known_keys(parent) -> set[str]:
    keys = set(parent.read(columns=["gen_key"]).column("gen_key").to_pylist())
    if "dropped" in parent.side_tables():
        keys |= set(parent.read_side("dropped", columns=["gen_key"]).column("gen_key").to_pylist())
    return keys


def _carried_signatures(parent, reused: pa.Table, out_dir: Path) -> list[str] | None:
    """The parent's signature rows of the carried rows only (dropped prompts must not block their
    changed successors), written once to ``out_dir``."""
    import pyarrow.parquet as pq

    files = parent.side_files("signatures")
    if not files:
        return None
    ids = pa.array(sorted(set(reused.column("prompt_id").to_pylist()) | set(reused.column("sample_id").to_pylist())),
                   pa.string())
    table = pa.concat_tables([pq.read_table(f) for f in files])  # keeps the signature-parameter metadata
    table = table.filter(pc.is_in(table["id"], value_set=ids))
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"carried-signatures-{parent.version}.parquet"
    pq.write_table(table, path)
    return [str(path)]


def plan_reuse(cfg, prompts: pa.Table, parent, work_dir: Path) -> ReusePlan:
    """Split ``prompts`` into those to generate and the parent rows to carry (see module doc)."""
    empty = DATASET_SCHEMA.empty_table()
    if parent is None:
        return ReusePlan(todo=prompts, reused=empty, parent_version=None,
                         counts={"prompts_new": prompts.num_rows, "prompts_reused": 0, "rows_reused": 0})
    keys = wanted_keys(cfg, prompts)
    known = _known_keys(parent)
    todo = prompts.filter(pa.array([k not in known for k in keys]))
    parent_rows = parent.read()
    reused = parent_rows.filter(pc.is_in(parent_rows["gen_key"], value_set=pa.array(sorted(set(keys)))))
    prior = _carried_signatures(parent, reused, work_dir) if cfg.dedup.cross_snapshot else None
    counts = {
        "prompts_new": todo.num_rows,
        "prompts_reused": prompts.num_rows - todo.num_rows,
        "rows_reused": reused.num_rows,
        "rows_not_carried": parent_rows.num_rows - reused.num_rows,
    }
    return ReusePlan(todo=todo, reused=reused, parent_version=parent.version, prior_signatures=prior, counts=counts)
