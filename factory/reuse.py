"""Reuse planning: what a run generates, and what it carries over from a parent snapshot (a refresh).

Contract:
- A prompt's samples are keyed by ``gen_key`` = prompt text × generation identity (teacher model and
  revision, sampling, prompt template: :func:`factory.stages.generate.config.gen_key`). A refresh
  does not regenerate a prompt whose key the parent holds, kept or dropped; every other prompt
  (new, edited, or under a new teacher/sampling/template) is generated. Prompts no longer in the
  sources are not carried.
- Carried rows are the parent's rows (kept rows and the ``dropped`` side table) whose key is still
  wanted. Only keys are read on the driver; the rows themselves stream from the parent's files
  through Ray Data into the new commit, never through the driver.
- Scoring is cheap, generation is not: when the scoring-side configuration (verify, reward, filter,
  dedup, decontam sections, the think format, and the eval sets' contents) differs from the
  parent's, every carried row — kept AND previously dropped — is re-checked: its scores and drop
  marks are cleared and it goes through the scoring stages again together with the new rows, so a
  loosened filter brings dropped samples back and a new eval set removes contaminated ones. When
  it is unchanged, carried rows keep their verdicts and drops, and new rows are deduplicated
  against the carried rows' MinHash signatures (side table). The manifest's ``refresh`` entry says
  which rows were carried, which re-checked, and why.
- The new snapshot records its parent; the store's commit fails if another writer published after
  that parent, so one schedule slot publishes at most once.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Iterator

import pyarrow as pa
import pyarrow.compute as pc

from factory.rows import with_filter_columns
from factory.schema import SAMPLE_SCHEMA, conform

SCORING_SECTIONS = ("verify", "reward", "filter", "dedup", "decontam")
"""Config sections whose change makes carried rows be re-checked."""
KEY_COLUMNS = ["gen_key", "prompt_id", "sample_id"]


def scoring_identity(cfg) -> dict:
    """What decides a generated sample's scores and drops: the scoring sections, whether ``<think>``
    is forced, and the content hash of every eval set decontamination reads (the held-out prompts
    too, when it indexes them)."""
    from factory.stages.decontam import eval_set_digest
    from factory.stages.ingest import heldout_prompts

    identity = {name: getattr(cfg, name).model_dump(mode="json") for name in SCORING_SECTIONS if name != "verify"}
    identity["verify"] = cfg.verify.verdict_settings()  # not where or how fast code runs: only what decides a verdict
    identity["force_think"] = cfg.generation.prompting.force_think
    identity["eval_sets"] = {spec.name: eval_set_digest(spec) for spec in cfg.decontam.benchmarks}
    if cfg.decontam.include_heldout and cfg.eval.heldout:
        prompts = "\n".join(sorted(heldout_prompts(cfg).column("prompt").to_pylist()))
        identity["heldout_prompts"] = hashlib.sha256(prompts.encode()).hexdigest()
    return identity


def scoring_hash(cfg) -> str:
    """Stable hash of :func:`scoring_identity` (recorded in every snapshot's lineage)."""
    return hashlib.sha256(json.dumps(scoring_identity(cfg), sort_keys=True).encode()).hexdigest()


def wanted_keys(cfg, prompts) -> pa.Array:
    """The generation key of every prompt under this run's generation config. ``prompts``: a pyarrow
    Table, or a Ray Dataset (large prompt sets: the keys are computed in its tasks and only the key
    column comes to the driver, in the dataset's order)."""
    from factory.stages.generate.config import generation_config_hash

    config_hash = generation_config_hash(cfg.generation)
    if isinstance(prompts, pa.Table):
        return _with_keys(prompts, config_hash)["gen_key"].combine_chunks()
    from factory.rows import collect

    keyed = prompts.map_batches(_with_keys, batch_format="pyarrow", fn_kwargs={"config_hash": config_hash})
    return collect(keyed.select_columns(["gen_key"]))["gen_key"].combine_chunks()


def _with_keys(batch: pa.Table, config_hash: str) -> pa.Table:
    from factory.stages.generate.config import gen_key

    keys = pa.array([gen_key(config_hash, p) for p in batch.column("prompt").to_pylist()], pa.string())
    return batch.append_column("gen_key", keys)


def _not_known(batch: pa.Table, config_hash: str, known) -> pa.Table:
    """The prompts of ``batch`` whose generation key is not in ``known`` (an object ref to a key array)."""
    import ray

    keyed = _with_keys(batch, config_hash)
    return batch.filter(pc.invert(pc.is_in(keyed["gen_key"], value_set=ray.get(known))))


@dataclass
class ReusePlan:
    """What a run generates, and what it carries over from its parent (module docstring)."""

    todo: object
    """Prompts to generate (PROMPT_SCHEMA): a pyarrow Table, or a Ray Dataset when ingest read in Ray Data."""
    parent: object | None = None
    """The parent Snapshot, or None for a fresh run."""
    keys: pa.Array | None = None
    """Generation keys carried over from the parent."""
    recheck: list[str] = field(default_factory=list)
    """Why carried rows are re-checked (empty: they are carried as committed)."""
    counts: dict = field(default_factory=dict)

    @property
    def parent_version(self) -> str | None:
        return self.parent.version if self.parent is not None else None

    def todo_dataset(self):
        """:attr:`todo` as a Ray Dataset with the filter columns, for the prompt-side stages."""
        import ray

        if isinstance(self.todo, pa.Table):
            return ray.data.from_arrow(with_filter_columns(self.todo))
        return self.todo.map_batches(with_filter_columns, batch_format="pyarrow")

    def summary(self) -> dict:
        return {"parent": self.parent_version, **self.counts, "rechecked_because": self.recheck or None}

    def _carried(self, side: str | None):
        """The parent's rows (data, or side table ``side``) with a carried key, as a Ray Dataset."""
        import ray

        if self.parent is None or not self.keys or (side and side not in self.parent.side_tables()):
            return None
        files = self.parent.files if side is None else self.parent.side_files(side)
        ds = ray.data.read_parquet(files, filesystem=self.parent.filesystem)
        keys = ray.put(self.keys)

        def keep(batch: pa.Table) -> pa.Table:
            return batch.filter(pc.is_in(batch["gen_key"], value_set=ray.get(keys)))

        return ds.map_batches(keep, batch_format="pyarrow")

    def carried_kept(self):
        """Carried kept rows as committed (DATASET_SCHEMA), or None."""
        return self._carried(None)

    def carried_dropped(self):
        """Carried dropped rows as committed (SCORED_SCHEMA), or None."""
        return self._carried("dropped")

    def carried_for_recheck(self, keep_verdicts: bool = False):
        """Every carried row (kept and dropped) with scores and drop marks cleared, ready for the
        scoring stages (SAMPLE_SCHEMA + filter columns), or None. ``keep_verdicts`` (adaptive sampling,
        whose generation loop verified every sample and has no verify stage after it) keeps the verify
        columns: a changed verifier in that mode does not re-verify carried rows."""
        parts = [ds for ds in (self.carried_kept(), self.carried_dropped()) if ds is not None]
        if not parts:
            return None
        cleared = [ds.map_batches(_cleared, batch_format="pyarrow", fn_kwargs={"keep_verdicts": keep_verdicts})
                   for ds in parts]
        return cleared[0].union(*cleared[1:]) if len(cleared) > 1 else cleared[0]

    def prior_signatures(self) -> Iterator[pa.Table]:
        """The carried rows' signature side-table rows (dropped prompts must not block their changed
        successors), file by file, parameters checked by the dedup stage."""
        import pyarrow.parquet as pq

        if self.parent is None or self.recheck or not self.keys:
            return
        ids = self.parent.read(columns=["prompt_id", "sample_id", "gen_key"])
        ids = ids.filter(pc.is_in(ids["gen_key"], value_set=self.keys))
        keep = pa.concat_arrays([ids["prompt_id"].combine_chunks(), ids["sample_id"].combine_chunks()]).unique()
        for path in self.parent.arrow_paths(self.parent.side_files("signatures")):
            table = pq.read_table(path, filesystem=self.parent.filesystem)  # keeps the parameter metadata
            yield table.filter(pc.is_in(table["id"], value_set=keep))


def _cleared(batch: pa.Table, keep_verdicts: bool = False) -> pa.Table:
    """A committed row as it left generation: its scoring columns gone (but the verify columns, with
    ``keep_verdicts``), no drop mark."""
    cleared = with_filter_columns(conform(batch, SAMPLE_SCHEMA))
    if not keep_verdicts:
        return cleared
    from factory.stages.verify import OUTPUT_FIELDS

    present = [field for field in OUTPUT_FIELDS if field.name in batch.column_names]
    for field in present:
        cleared = cleared.append_column(field, batch[field.name].cast(field.type))
    return cleared


def plan_reuse(cfg, prompts, parent) -> ReusePlan:
    """Split ``prompts`` (a pyarrow Table, or a Ray Dataset) into those to generate and the parent keys
    to carry (module docstring). The driver holds key columns only: the parent's and, for a Ray Dataset,
    the wanted ones; the prompts to generate stay a lazy filter of that dataset."""
    total = prompts.num_rows if isinstance(prompts, pa.Table) else None
    if parent is None:
        total = total if total is not None else prompts.count()
        return ReusePlan(todo=prompts, counts={"prompts_new": total, "prompts_reused": 0,
                                               "rows_carried": 0, "rows_rechecked": 0})
    wanted = wanted_keys(cfg, prompts)
    parent_keys = parent.read(columns=["gen_key"])["gen_key"]
    dropped_keys = (parent.read_side("dropped", columns=["gen_key"])["gen_key"]
                    if "dropped" in parent.side_tables() else pa.chunked_array([], pa.string()))
    known = pa.concat_arrays([parent_keys.combine_chunks(), dropped_keys.combine_chunks()])
    done = pc.is_in(wanted, value_set=known)
    new = len(wanted) - int(pc.sum(done).as_py() or 0)
    if isinstance(prompts, pa.Table):
        todo = prompts.filter(pc.invert(done))
    else:
        import ray

        from factory.stages.generate.config import generation_config_hash

        todo = prompts.map_batches(_not_known, batch_format="pyarrow", fn_kwargs={
            "config_hash": generation_config_hash(cfg.generation), "known": ray.put(known)})
    carried = wanted.filter(done).unique()
    recheck = _recheck_reasons(cfg, parent)
    carried_rows = int(pc.sum(pc.is_in(parent_keys, value_set=carried)).as_py() or 0)
    carried_dropped = int(pc.sum(pc.is_in(dropped_keys, value_set=carried)).as_py() or 0)
    counts = {
        "prompts_new": new,
        "prompts_reused": len(wanted) - new,
        "rows_carried": carried_rows,
        "dropped_rows_carried": carried_dropped,
        "rows_not_carried": len(parent_keys) - carried_rows,
        "rows_rechecked": carried_rows + carried_dropped if recheck else 0,
    }
    return ReusePlan(todo=todo, parent=parent, keys=carried, recheck=recheck, counts=counts)


def _recheck_reasons(cfg, parent) -> list[str]:
    """Which parts of the scoring identity differ from the parent's (all of it when unknown)."""
    stored = (parent.manifest.get("lineage") or {}).get("scoring")
    if stored is None:
        return ["the parent snapshot records no scoring identity"]
    current = scoring_identity(cfg)
    return [f"{name} changed" for name in current if current[name] != stored.get(name)]
