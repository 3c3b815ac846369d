"""A writer's private, not-yet-visible snapshot: write Parquet into it, then commit or abort.

Contract: nothing under a staging dir is visible to readers; ``commit`` either publishes the
whole snapshot and returns it, or raises and removes the staging dir (a crash before the claim
leaves the dir for ``gc_staging``; after it, the next writer completes the publish).

Parent check: a stage begun against parent X (the default "latest" resolves X when ``begin``
runs) may only become version X+1; if another writer published or claimed X+1 first,
``commit`` raises :class:`CommitConflict` and does not retry, so a scheduled duplicate run
cannot publish twice. A stage begun with ``parent=None`` takes the next free
version and retries on a race, so concurrent unchecked writers all publish, in some order.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
from datetime import datetime, timezone
from typing import TYPE_CHECKING

import pyarrow as pa

from factory.schema import conform
from factory.store import commit as protocol
from factory.store.card import render_card
from factory.store.code_revision import code_version
from factory.store.config import DATASET_NAME
from factory.store.errors import CommitConflict, StoreError
from factory.store.layout import CARD, MANIFEST, SIDE, dump_json, format_version, version_number, write_atomic
from factory.store.parts import finalize, incoming_files, schema_record, write_split
from factory.store.snapshot import Snapshot

if TYPE_CHECKING:
    from factory.store.store import SnapshotStore

FORMAT = "distill-factory-snapshot/1"
RESERVED = ("format", "dataset", "version", "parent", "created_at", "writer", "schema", "num_rows",
            "files", "side_tables")
INCOMING = "_incoming"
MAX_UNCHECKED_ATTEMPTS = 100


class StagedSnapshot:
    """Staging dir ``ROOT/DATASET/_staging/<id>``; see the module docstring for the contract."""

    def __init__(self, store: "SnapshotStore", staging_id: str, parent: str | None, check_parent: bool,
                 schema: pa.Schema | None):
        self.store = store
        self.id = staging_id
        self.path = os.path.join(store.layout.staging, staging_id)
        self.parent = parent
        self.check_parent = check_parent
        self.schema = schema
        self.state = "open"
        self._writes = 0
        os.makedirs(self.data_dir)

    @property
    def data_dir(self) -> str:
        """Directory the pipeline writes data Parquet files into (driver or Ray ``write_parquet``)."""
        return os.path.join(self.path, INCOMING, "data")

    def side_dir(self, name: str) -> str:
        """Directory for side table ``name`` (e.g. "dropped", "signatures"); created on first use."""
        if not DATASET_NAME.match(name):
            raise ValueError(f"side table name {name!r} must match {DATASET_NAME.pattern}")
        path = os.path.join(self.path, INCOMING, "side", name)
        os.makedirs(path, exist_ok=True)
        return path

    def ray_write_kwargs(self) -> dict:
        """Keyword arguments for ``Dataset.write_parquet(staged.data_dir, **kwargs)`` matching the
        store's file size, row-group size and codec."""
        options = self.store.options
        return {"max_rows_per_file": options.rows_per_file, **options.parquet_kwargs()}

    def write_table(self, table: pa.Table, side: str | None = None) -> list[str]:
        """Write ``table`` (conformed to the stage's schema for data writes) as files of at most
        ``rows_per_file`` rows; returns their staging paths."""
        self._require_open()
        if side is None and self.schema is not None:
            table = conform(table, self.schema)
        directory = self.data_dir if side is None else self.side_dir(side)
        self._writes += 1
        return write_split(table, directory, f"driver-{self._writes:06d}", self.store.options)

    def abort(self) -> None:
        """Discard the staging dir (no-op once committed or aborted)."""
        if self.state == "open":
            shutil.rmtree(self.path, ignore_errors=True)
            self.state = "aborted"

    def __enter__(self) -> "StagedSnapshot":
        return self

    def __exit__(self, *exc) -> None:
        self.abort()

    def _require_open(self) -> None:
        if self.state != "open":
            raise StoreError(f"staging {self.id} is {self.state}")

    def commit(self, manifest: dict, card: str | None = None) -> Snapshot:
        """Publish the staged files as the next version; see the module docstring.

        ``manifest`` holds the pipeline's keys (config, lineage, counts, drops, dedup, decontam,
        …), must be JSON-serialisable and must not use the store's own keys (``RESERVED``);
        ``code_version`` is filled in when absent. ``card`` replaces the default dataset card.
        Raises CommitConflict (staging removed) when another writer won; any other error before
        the claim also removes the staging dir."""
        self._require_open()
        _check_manifest(manifest)
        try:
            body = self._finalize(manifest)
            version = self._claim(body, card)
        except BaseException:
            self.abort()
            raise
        protocol.publish(self.store.layout, self.path, version)
        self.state = "committed"
        protocol.update_latest(self.store.layout)
        return Snapshot.open(self.store.layout.snapshot_dir(version))

    def _finalize(self, manifest: dict) -> dict:
        incoming = os.path.join(self.path, INCOMING)
        options = self.store.options
        schema, files = finalize(self.data_dir, self.path, self.path, self.schema, options)
        sides = {}
        side_root = os.path.join(incoming, "side")
        for name in sorted(os.listdir(side_root)) if os.path.isdir(side_root) else []:
            if incoming_files(os.path.join(side_root, name)):
                side_schema, side_files = finalize(os.path.join(side_root, name),
                                                   os.path.join(self.path, SIDE, name), self.path, None, options)
                sides[name] = {"schema": schema_record(side_schema), "files": side_files,
                               "num_rows": sum(f["rows"] for f in side_files)}
        shutil.rmtree(incoming)
        return {
            "code_version": code_version(),
            **manifest,
            "format": FORMAT,
            "dataset": self.store.dataset,
            "writer": {"host": socket.gethostname(), "pid": os.getpid(), "staging": self.id},
            "schema": schema_record(schema),
            "num_rows": sum(f["rows"] for f in files),
            "files": files,
            "side_tables": sides,
        }

    def _claim(self, body: dict, card: str | None) -> str:
        layout = self.store.layout
        for _ in range(MAX_UNCHECKED_ATTEMPTS):
            protocol.roll_forward(layout)
            published = layout.published_versions()
            current = published[-1] if published else None
            if self.check_parent:
                if current != self.parent:
                    built_on = self.parent or "an empty store"
                    raise CommitConflict(f"{self.store.dataset}: built on {built_on} but {current} is now the latest")
                parent = current
            else:
                parent = max(published + layout.claimed_versions(), key=version_number, default=None)
            version = format_version(version_number(parent) + 1 if parent else 1)
            self._write_metadata({**body, "version": version, "parent": parent,
                                  "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}, card)
            if protocol.claim(layout, version, {"version": version, "staging": self.id, "writer": body["writer"]}):
                self.state = "claimed"  # from here on the staging dir belongs to the claim: never abort it
                return version
            if self.check_parent:
                raise CommitConflict(f"{self.store.dataset}: another writer claimed {version} first")
        raise CommitConflict(f"{self.store.dataset}: lost {MAX_UNCHECKED_ATTEMPTS} version races in a row")

    def _write_metadata(self, manifest: dict, card: str | None) -> None:
        """Card first, manifest last: a staging dir with a manifest is complete."""
        write_atomic(os.path.join(self.path, CARD), (card if card is not None else render_card(manifest)).encode())
        write_atomic(os.path.join(self.path, MANIFEST), dump_json(manifest))


def _check_manifest(manifest: dict) -> None:
    clashes = [key for key in RESERVED if key in manifest]
    if clashes:
        raise ValueError(f"manifest keys {clashes} are written by the store; use other names")
    try:
        json.dumps(manifest, allow_nan=False)
    except (TypeError, ValueError) as e:
        raise ValueError(f"manifest is not JSON-serialisable: {e}") from None
