"""Checkpoint of finished generation rows: Parquet shards under a config-hash-keyed directory.

Layout: ``<checkpoint_dir>/generate-<config hash[:16]>/shards/<batch key>.parquet`` plus
``stats.json``. A shard holds all n rows of each prompt of one batch; its name is a hash of the
batch's (prompt_id, gen_key) pairs, so a retried batch overwrites its own shard instead of adding
a duplicate. Writes go through :func:`factory.atomic.write_atomic` (temp file, then rename):
a reader never sees a partial shard. Only deterministic outcomes are stored (``ok`` and
``prompt_too_long``); ``engine_error`` rows are retried by the next run. If two shards hold the
same prompt (two concurrent runs, not supported), the first in name order wins.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import OrderedDict

import pyarrow as pa
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
        self._index: dict[str, tuple[str, str]] | None = None
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

    def index(self) -> dict[str, tuple[str, str]]:
        """prompt_id -> (gen_key, shard path) of every prompt already done (built once, then cached)."""
        if self._index is None:
            self._index = {}
            for path in self.shard_files():
                keys = pq.read_table(path, columns=["prompt_id", "gen_key"])
                for prompt_id, key in zip(keys["prompt_id"].to_pylist(), keys["gen_key"].to_pylist()):
                    self._index.setdefault(prompt_id, (key, path))
        return self._index

    def done(self, prompt_id: str, key: str) -> bool:
        """Whether this prompt, with this gen_key, is already in the checkpoint."""
        entry = self.index().get(prompt_id)
        return entry is not None and entry[0] == key

    def read_prompt(self, prompt_id: str) -> pa.Table:
        """The stored rows of one done prompt, in sample_index order."""
        import pyarrow.compute as pc

        path = self.index()[prompt_id][1]
        table = self._cache.get(path)
        if table is None:
            table = pq.read_table(path)
            self._cache[path] = table
            if len(self._cache) > _CACHED_SHARDS:
                self._cache.popitem(last=False)
        self._cache.move_to_end(path)
        rows = table.filter(pc.equal(table["prompt_id"], prompt_id))
        return rows.sort_by("sample_index")

    def write_shard(self, table: pa.Table) -> str | None:
        """Atomically store ``table``'s checkpointable rows; returns the shard path (None if none)."""
        import pyarrow.compute as pc

        keep = pc.is_in(table["gen_status"], value_set=pa.array(CHECKPOINTED_STATUSES))
        table = table.filter(keep)
        if table.num_rows == 0:
            return None
        pairs = sorted(set(zip(table["prompt_id"].to_pylist(), table["gen_key"].to_pylist())))
        name = hashlib.sha256(json.dumps(pairs).encode()).hexdigest()[:32] + ".parquet"
        path = os.path.join(self.shard_dir, name)
        write_atomic(path, lambda tmp: pq.write_table(table, tmp))
        return path
