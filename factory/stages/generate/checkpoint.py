"""Checkpoint of finished generation rows: Parquet shards under a config-hash-keyed directory.

Layout: ``<checkpoint_dir>/generate-<config hash[:16]>/shards/<rows key>.parquet`` plus
``stats.json``. With a fixed n a shard holds all n rows of each prompt of one batch; in adaptive
mode it holds finished rounds (all rows of each), so one prompt's rows may span several shards. A
shard's name is a hash of its (prompt_id, gen_key, sample_index) triples, so a retried batch or
round overwrites its own shard instead of adding a duplicate. Writes go through
:func:`factory.atomic.write_atomic` (temp file, then rename): a reader never sees a partial shard.
Only deterministic outcomes are stored (``ok`` and ``prompt_too_long``); ``engine_error`` rows are
retried by the next run. If two shards hold the same sample (two concurrent runs, not supported),
the first in name order wins.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import OrderedDict

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from factory.atomic import write_atomic

CHECKPOINTED_STATUSES = ("ok", "prompt_too_long")
_CACHED_SHARDS = 8


class CheckpointStore:
    """Shards of one generation config; picklable (the index travels to the actors)."""

    def __init__(self, checkpoint_dir: str, config_hash: str):
        self.root = os.path.join(checkpoint_dir, f"generate-{config_hash[:16]}")
        self.shard_dir = os.path.join(self.root, "shards")
        self.stats_path = os.path.join(self.root, "stats.json")
        self._index: dict[tuple[str, str], list[str]] | None = None
        self._indexed: set[str] = set()
        self._tokens = 0
        self._cache: OrderedDict[str, pa.Table] = OrderedDict()

    def __getstate__(self) -> dict:
        self.index()
        return {**self.__dict__, "_cache": OrderedDict()}

    def shard_files(self) -> list[str]:
        """Finished shard paths, sorted by name."""
        if not os.path.isdir(self.shard_dir):
            return []
        return sorted(
            os.path.join(self.shard_dir, f) for f in os.listdir(self.shard_dir) if f.endswith(".parquet")
        )

    def index(self) -> dict[tuple[str, str], list[str]]:
        """(prompt_id, gen_key) -> the shards holding its rows, in name order (built once, then cached)."""
        if self._index is None:
            self._index = {}
            self.refresh()
        return self._index

    def refresh(self) -> None:
        """Index the shards written since the index was built (e.g. by this actor's predecessor)."""
        if self._index is None:
            self._index = {}
        index = self._index
        for path in self.shard_files():
            if path in self._indexed:
                continue
            keys = pq.read_table(path, columns=["prompt_id", "gen_key", "completion_tokens"])
            for pair in sorted(set(zip(keys["prompt_id"].to_pylist(), keys["gen_key"].to_pylist()))):
                index.setdefault(pair, []).append(path)
            self._tokens += int(pc.sum(keys["completion_tokens"]).as_py() or 0)
            self._indexed.add(path)
        for paths in index.values():
            paths.sort()

    def spent_tokens(self) -> int:
        """Completion tokens of every stored row (what earlier attempts of this config cost)."""
        self.index()
        return self._tokens

    def done(self, prompt_id: str, key: str) -> bool:
        """Whether rows of this prompt, with this gen_key, are in the checkpoint."""
        return (prompt_id, key) in self.index()

    def read_prompt(self, prompt_id: str, key: str) -> pa.Table:
        """The stored rows of one prompt, each sample_index once, in sample_index order."""
        parts, seen = [], set()
        for path in self.index()[(prompt_id, key)]:
            rows = self._shard(path)
            rows = rows.filter(pc.and_(pc.equal(rows["prompt_id"], prompt_id), pc.equal(rows["gen_key"], key)))
            fresh = [i for i, index in enumerate(rows["sample_index"].to_pylist()) if index not in seen]
            seen.update(rows["sample_index"].to_pylist())
            parts.append(rows.take(fresh))
        return pa.concat_tables(parts, promote_options="default").sort_by("sample_index")

    def _shard(self, path: str) -> pa.Table:
        table = self._cache.get(path)
        if table is None:
            table = pq.read_table(path)
            self._cache[path] = table
            if len(self._cache) > _CACHED_SHARDS:
                self._cache.popitem(last=False)
        self._cache.move_to_end(path)
        return table

    def write_shard(self, table: pa.Table) -> str | None:
        """Atomically store ``table``'s checkpointable rows; returns the shard path (None if none)."""
        keep = pc.is_in(table["gen_status"], value_set=pa.array(CHECKPOINTED_STATUSES))
        table = table.filter(keep)
        if table.num_rows == 0:
            return None
        triples = sorted(zip(table["prompt_id"].to_pylist(), table["gen_key"].to_pylist(),
                             table["sample_index"].to_pylist()))
        name = hashlib.sha256(json.dumps(triples).encode()).hexdigest()[:32] + ".parquet"
        path = os.path.join(self.shard_dir, name)
        write_atomic(path, lambda tmp: pq.write_table(table, tmp))
        return path
