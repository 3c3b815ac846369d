"""Dedup stage: exact and MinHash near-duplicate removal of prompts (across the dataset) and of
responses (within one prompt's samples), optionally against earlier snapshots' signatures.

Contract:
- The :class:`Dedup` stage sets ``drop_reason`` / ``drop_stage="dedup"`` on duplicates whose
  ``drop_reason`` was null (one row out per row in; rows already dropped pass through untouched and
  never act as representatives); its stats go to the manifest. Reasons: ``dup_exact_prompt``, ``dup_near_prompt``, ``dup_exact_response``,
  ``dup_near_response``, ``dup_previous_snapshot``.
- Per-row work (normalised-text hashes, shingles, MinHash signatures, band keys) runs in Ray Data
  ``map_batches`` over whole batches: numpy, plus one numba kernel for word-shingle signatures
  (compiled once per worker process, ~2 s; see :meth:`MinHasher.text_signatures`). The global
  step (grouping band keys, union-find, choosing representatives) runs on the driver over compact
  keys; see :mod:`factory.dedup.components` for why and where that stops scaling (~100M rows on a
  32-64 GB driver). The input is materialised once, so the upstream pipeline is not executed twice.
- LSH (bands, rows) come from ``threshold`` exactly as datasketch's ``MinHashLSH`` picks them,
  unless both are given. Signatures equal datasketch's ``MinHash`` (scheme ``affine32``) for the
  same shingle hashes.
- Cross-snapshot: :func:`signature_tables` gives the kept rows' signatures, which the commit stores as
  the snapshot's ``signatures`` side table (:mod:`factory.dedup.side_table`); a refresh passes the
  carried rows' side-table rows as ``run.extras["prior_signatures"]``.
Not covered: semantic (embedding) dedup; dedup of responses across different prompts.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import model_validator

from factory.dedup.components import band_keys
from factory.dedup.hashing import exact_hashes, hash64, scoped
from factory.dedup.minhash import lsh_params
from factory.dedup.resolve import resolve
from factory.dedup.side_table import SignatureParams, checked, side_rows, text_signatures, with_params
from factory.pipeline import Stage, StageOutput
from factory.rows import mark_listed
from factory.sections import Section

STAGE = "dedup"
KeepRule = Literal["highest_reward", "shortest", "longest"]


class DedupConfig(Section):
    """Which dedup levels run and the MinHash/LSH parameters (datasketch-compatible)."""

    exact_prompts: bool = True
    """Drop prompts whose normalised text (NFKC, lowercase, whitespace-collapsed) repeats an earlier one."""
    exact_responses: bool = True
    """Drop samples repeating another sample of the same prompt after the same normalisation."""
    near_prompts: bool = True
    """Drop prompts that are MinHash near-duplicates of another prompt (all their samples go)."""
    near_responses: bool = True
    """Drop samples that are MinHash near-duplicates of another sample of the same prompt."""
    num_perm: int = 128
    """Signature length: more permutations estimate Jaccard more precisely at more cost."""
    seed: int = 1
    """Seed of the permutations (datasketch's default 1), so signatures match datasketch's."""
    threshold: float = 0.8
    """Jaccard similarity from which texts count as near-duplicates; picks bands × rows."""
    bands: int | None = None
    """LSH bands, to override the threshold-derived choice (give rows too)."""
    rows: int | None = None
    """Signature values per band, to override the threshold-derived choice (give bands too)."""
    shingle: Literal["word", "char"] = "word"
    """Shingle unit: words suit prose and reasoning; characters suit scripts without spaces."""
    ngram: int = 5
    """Units per shingle: longer shingles make similarity depend more on word order."""
    keep_rule: tuple[KeepRule, ...] = ("highest_reward", "shortest")
    """Which member of a duplicate group is kept; ties end with the smallest id, so it is deterministic."""
    cross_snapshot: bool = True
    """Also drop rows that duplicate rows of earlier snapshots (via their signature side tables)."""
    batch_size: int = 1024
    """Rows per map_batches call: large enough to amortise numpy overhead, small enough for memory."""

    @model_validator(mode="after")
    def _check(self) -> "DedupConfig":
        if self.num_perm < 2:
            raise ValueError(f"num_perm must be >= 2, got {self.num_perm}")
        if not 0.0 < self.threshold < 1.0:
            raise ValueError(f"threshold must be in (0, 1), got {self.threshold}")
        if (self.bands is None) != (self.rows is None):
            raise ValueError("bands and rows must be given together (or neither)")
        if self.bands is not None and (self.bands < 1 or self.rows < 1 or self.bands * self.rows > self.num_perm):
            raise ValueError(f"bands × rows must be >= 1 and <= num_perm={self.num_perm}, got {self.bands}×{self.rows}")
        if self.ngram < 1:
            raise ValueError(f"ngram must be >= 1, got {self.ngram}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        return self

    def lsh(self) -> tuple[int, int]:
        """(bands, rows): explicit, or datasketch's optimum for the threshold (equal weights)."""
        if self.bands is not None and self.rows is not None:
            return self.bands, self.rows
        return lsh_params(self.threshold, self.num_perm)

    def signature_params(self) -> SignatureParams:
        """What the stored signatures depend on (checked when reading earlier snapshots')."""
        return SignatureParams(self.num_perm, self.seed, self.shingle, self.ngram)


def _band_matrix(texts: list[str], cfg: DedupConfig, scope: np.ndarray | None) -> np.ndarray:
    """(N, bands) LSH band keys of the texts, scoped (e.g. by prompt) when ``scope`` is given."""
    bands, rows = cfg.lsh()
    keys = band_keys(text_signatures(texts, cfg.signature_params()), bands, rows)
    return keys if scope is None else scoped(keys, scope)


def features(batch: pa.Table, cfg: DedupConfig) -> pa.Table:
    """Per-row dedup features (see :mod:`factory.dedup.resolve`); dropped rows get ``live=false``
    and are not hashed (their keys are zeros). Prompt features are computed once per distinct
    prompt_id in the batch."""
    n = batch.num_rows
    live = pc.is_null(batch["drop_reason"]) if "drop_reason" in batch.column_names else pa.array([True] * n)
    live_np = live.to_numpy(zero_copy_only=False)
    prompt_ids = batch["prompt_id"].to_pylist()
    prompts = batch["prompt"].to_pylist()
    has_completion = "completion" in batch.column_names
    completions = batch["completion"].to_pylist() if has_completion else [None] * n
    first_of: dict[str, int] = {}
    for i in np.flatnonzero(live_np):
        first_of.setdefault(prompt_ids[i], int(i))
    unique_rows = np.array(sorted(first_of.values()), dtype=np.int64)
    where = np.zeros(n, dtype=np.int64)
    position = {prompt_ids[r]: k for k, r in enumerate(unique_rows)}
    for i in np.flatnonzero(live_np):
        where[i] = position[prompt_ids[i]]
    unique_prompts = [prompts[r] for r in unique_rows]

    def per_row(values: np.ndarray, width: int) -> np.ndarray:
        out = np.zeros((n, width), dtype=np.uint64)
        if values.size:
            out[live_np] = values.reshape(len(unique_rows), width)[where[live_np]]
        return out

    prompt_exact = per_row(exact_hashes(unique_prompts), 1)[:, 0]
    rows = np.flatnonzero(live_np & np.array([c is not None for c in completions], dtype=bool))
    scope = hash64(prompt_ids[i] for i in rows)
    completion_exact = np.zeros(n, dtype=np.uint64)
    completion_exact[rows] = scoped(exact_hashes(completions[i] for i in rows), scope)
    columns = {
        "prompt_id": batch["prompt_id"],
        "sample_id": batch["sample_id"] if "sample_id" in batch.column_names else batch["prompt_id"],
        "live": live,
        "reward": batch["reward"].cast(pa.float64()) if "reward" in batch.column_names else pa.nulls(n, pa.float64()),
        "prompt_len": pc.utf8_length(batch["prompt"]).cast(pa.int64()),
        "completion_len": (
            pc.utf8_length(batch["completion"]).cast(pa.int64()) if has_completion else pa.nulls(n, pa.int64())
        ),
        "prompt_exact": pa.array(prompt_exact, pa.uint64()),
        "completion_exact": pa.array(completion_exact, pa.uint64()),
    }
    bands, _ = cfg.lsh()
    if cfg.near_prompts:
        keys = _band_matrix(unique_prompts, cfg, None)
        columns["prompt_bands"] = pa.FixedSizeListArray.from_arrays(pa.array(per_row(keys, bands).ravel()), bands)
    if cfg.near_responses:
        keys = np.zeros((n, bands), dtype=np.uint64)
        keys[rows] = _band_matrix([completions[i] for i in rows], cfg, scope)
        columns["completion_bands"] = pa.FixedSizeListArray.from_arrays(pa.array(keys.ravel()), bands)
    return pa.table(columns)


def _matrix_of(array: pa.FixedSizeListArray, width: int) -> np.ndarray:
    return array.flatten().to_numpy(zero_copy_only=False).reshape(-1, width)


def _prior_keys(tables, cfg: DedupConfig) -> tuple[dict, dict, dict]:
    """Keys of earlier snapshots' prompts and responses, in the form :func:`resolve` expects, from an
    iterable of side tables (streamed: only the compact band keys and hashes are kept)."""
    bands, rows = cfg.lsh()
    parts: dict[str, list] = {"prompt": [], "response": []}
    for index, table in enumerate((tables or ()) if cfg.cross_snapshot else ()):
        table = checked(table, cfg.signature_params(), f"of an earlier snapshot (part {index})")
        for kind in parts:
            part = table.filter(pc.equal(table["kind"], kind))
            if part.num_rows == 0:
                continue
            signatures = _matrix_of(part["signature"].combine_chunks(), cfg.num_perm).astype(np.uint32)
            exact, keys = part["exact_hash"].to_numpy(), band_keys(signatures, bands, rows)
            if kind == "response":
                scope = hash64(part["scope"].to_pylist())
                exact, keys = scoped(exact, scope), scoped(keys, scope)
            parts[kind].append((exact, keys))
    out, counts = [], {}
    for kind, found in parts.items():
        exact = np.concatenate([f[0] for f in found]) if found else np.zeros(0, np.uint64)
        keys = np.concatenate([f[1] for f in found]) if found else np.zeros((0, bands), np.uint64)
        out.append({"exact": exact, "bands": keys})
        counts[kind] = int(exact.size)
    return out[0], out[1], counts


class Dedup(Stage):
    """Exact and MinHash near-duplicate marking (module docstring). Run input:
    ``run.extras["prior_signatures"]``, an iterable of side tables of earlier snapshots (refresh)."""

    name = STAGE
    section = "dedup"
    requires = ("prompt_id", "sample_id", "prompt", "completion", "drop_reason", "drop_stage")
    adds = ("drop_reason", "drop_stage")
    barrier = ("duplicate groups span the whole dataset: every row's keys are resolved on the driver before any "
               "row is marked, so the input is materialised once (not computed twice)")

    def apply(self, ds) -> StageOutput:
        import ray

        from factory.rows import collect

        cfg = self.config
        ds = ds.materialize()
        table = collect(self.map_batches(ds, features, batch_size=cfg.batch_size, fn_kwargs={"cfg": cfg}))
        if table.num_rows == 0:
            return StageOutput(ds, {"rows_in": 0, "rows_live": 0, "prompts_live": 0, "dropped_rows": {},
                                    "cluster_sizes": {}})
        prior_prompts, prior_responses, prior_counts = _prior_keys(self.run.extras.get("prior_signatures"), cfg)
        level_names = ("exact_prompts", "near_prompts", "exact_responses", "near_responses")
        levels = {name: getattr(cfg, name) for name in level_names}
        decisions = resolve(table, prior_prompts, prior_responses, levels, cfg.keep_rule)
        bands, rows = cfg.lsh()
        stats = {
            **decisions.stats,
            "prior_rows": prior_counts,
            "lsh": {"num_perm": cfg.num_perm, "threshold": cfg.threshold, "bands": bands, "rows": rows},
        }
        drops = ray.put(
            (
                {why: pa.array(ids, pa.string()) for why, ids in decisions.prompt_drops.items() if ids},
                {why: pa.array(ids, pa.string()) for why, ids in decisions.sample_drops.items() if ids},
            )
        )

        def apply(batch: pa.Table) -> pa.Table:
            prompt_drops, sample_drops = ray.get(drops)
            return mark_listed(batch, {"prompt_id": prompt_drops, "sample_id": sample_drops}, STAGE)

        return StageOutput(self.map_batches(ds, apply, batch_size=cfg.batch_size), stats)

    def view(self, stats: dict) -> dict:
        bars = []
        for level, sizes in (stats.get("cluster_sizes") or {}).items():
            if sizes:
                ordered = sorted(sizes.items(), key=lambda item: int(str(item[0]).split("-")[0].rstrip("+")))
                bars.append({"title": f"{level} clusters by size", "labels": [str(s) for s, _ in ordered],
                             "values": [c for _, c in ordered], "unit": "clusters"})
        scalars = [[k, v] for k, v in stats.items() if k != "cluster_sizes"]
        return {"tables": [{"title": "Deduplication", "header": None, "rows": scalars}], "bars": bars}


def signature_tables(ds, cfg: DedupConfig):
    """The signature side table of the kept rows (``drop_reason`` null) of a committed dataset (a
    ``ray.data.Dataset``), batch by batch, ready to write (:func:`factory.dedup.side_table.with_params`)."""
    params = cfg.signature_params()
    rows = ds.map_batches(side_rows, batch_format="pyarrow", batch_size=cfg.batch_size, fn_kwargs={"params": params})
    for table in rows.iter_batches(batch_format="pyarrow", batch_size=None):
        if table.num_rows:
            yield with_params(table, params)
