"""A writer's private, not-yet-visible snapshot: write Parquet into it, then commit or abort.

Contract: nothing under a staging dir is visible to readers; ``commit`` either publishes the
whole snapshot and returns it, or raises and removes the staging dir (a crash before the claim
leaves the dir for ``gc_staging``; after it, the next writer completes the publish).

Parent check: a stage begun against parent X (the default "latest" resolves X when ``begin``
runs) may only become version X+1; if another writer published or claimed X+1 first,
``commit`` raises :class:`CommitConflict` and does not retry, so a scheduled duplicate run
cannot publish twice. A stage begun with ``parent=None`` takes the next free
version and retries on a race, so concurrent unchecked writers all publish, in some order.

On object storage the staging dir is a prefix (``data_dir``/``side_dir`` are URIs, written through
``filesystem``); the protocol is the same (:mod:`factory.store.commit`).
"""

from __future__ import annotations

import json
import os
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
from factory.store.layout import CARD, INCOMING, MANIFEST, MOVES, SIDE, dump_json, format_version, version_number
from factory.store.parts import finalize, incoming_files, schema_record, write_split
from factory.store.snapshot import Snapshot

if TYPE_CHECKING:
    from factory.store.store import SnapshotStore

FORMAT = "distill-factory-snapshot/1"
RESERVED = ("format", "dataset", "version", "parent", "created_at", "writer", "schema", "num_rows",
            "files", "side_tables")
MAX_UNCHECKED_ATTEMPTS = 100


class StagedSnapshot:
    """Staging dir ``ROOT/DATASET/_staging/<id>`` (a local dir or an object-store prefix); see
    the module docstring for the contract."""

    def __init__(self, store: "SnapshotStore", staging_id: str, parent: str | None, check_parent: bool,
                 schema: pa.Schema | None):
        self.store = store
        self.files = store.layout.files
        self.id = staging_id
        self.path = self.files.join(store.layout.staging, staging_id)
        self.parent = parent
        self.check_parent = check_parent
        self.schema = schema
        self.state = "open"
        self._writes = 0
        self.files.ensure_dirs(self.data_dir)

    @property
    def data_dir(self) -> str:
        """Directory (path or URI) the pipeline writes data Parquet files into (driver, or Ray
        ``write_parquet(staged.data_dir, **staged.ray_write_kwargs())``)."""
        return self.files.join(self.path, INCOMING, "data")

    def side_dir(self, name: str) -> str:
        """Directory for side table ``name`` (e.g. "dropped", "signatures"); created on first use."""
        if not DATASET_NAME.match(name):
            raise ValueError(f"side table name {name!r} must match {DATASET_NAME.pattern}")
        path = self.files.join(self.path, INCOMING, "side", name)
        self.files.ensure_dirs(path)
        return path

    @property
    def filesystem(self):
        """The pyarrow filesystem of ``data_dir`` and ``side_dir`` (None for a local store); pyarrow
        takes paths without the scheme on it: ``staged.files.arrow_path(uri)``."""
        return self.files.arrow_fs

    def ray_write_kwargs(self) -> dict:
        """Keyword arguments for ``Dataset.write_parquet(staged.data_dir, **kwargs)`` matching the
        store's file size, row-group size and codec, with ``filesystem=`` for object storage."""
        options = self.store.options
        kwargs = {"max_rows_per_file": options.rows_per_file, **options.parquet_kwargs()}
        if self.files.arrow_fs is not None:
            kwargs["filesystem"] = self.files.arrow_fs
        return kwargs

    def write_table(self, table: pa.Table, side: str | None = None) -> list[str]:
        """Write ``table`` (conformed to the stage's schema for data writes) as files of at most
        ``rows_per_file`` rows; returns their staging paths."""
        self._require_open()
        if side is None and self.schema is not None:
            table = conform(table, self.schema)
        directory = self.data_dir if side is None else self.side_dir(side)
        self._writes += 1
        return write_split(table, directory, f"driver-{self._writes:06d}", self.store.options, self.files)

    def abort(self) -> None:
        """Discard the staging dir (no-op once committed or aborted)."""
        if self.state == "open":
            self.files.remove_tree(self.path)
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
        return Snapshot.open(self.store.layout.snapshot_dir(version), self.files)

    def _finalize(self, manifest: dict) -> dict:
        """Name and checksum every staged file; locally the incoming dir is then removed, on
        object storage ``_moves.json`` records which staged object becomes which part."""
        files, options = self.files, self.store.options
        incoming = files.join(self.path, INCOMING)
        schema, entries, moves = finalize(self.data_dir, self.path, self.path, self.schema, options, files)
        sides = {}
        side_root = files.join(incoming, "side")
        for name in sorted(files.names(side_root)):
            side_dir = files.join(side_root, name)
            if incoming_files(side_dir, files):
                side_schema, side_files, side_moves = finalize(side_dir, files.join(self.path, SIDE, name), self.path,
                                                               None, options, files)
                moves.update(side_moves)
                sides[name] = {"schema": schema_record(side_schema), "files": side_files,
                               "num_rows": sum(f["rows"] for f in side_files)}
        if moves:
            files.write(files.join(self.path, MOVES), dump_json(moves))
        else:
            files.remove_tree(incoming)
        return {
            "code_version": code_version(),
            **manifest,
            "format": FORMAT,
            "dataset": self.store.dataset,
            "writer": {"host": socket.gethostname(), "pid": os.getpid(), "staging": self.id},
            "schema": schema_record(schema),
            "num_rows": sum(f["rows"] for f in entries),
            "files": entries,
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
        text = card if card is not None else render_card(manifest)
        self.files.write(self.files.join(self.path, CARD), text.encode())
        self.files.write(self.files.join(self.path, MANIFEST), dump_json(manifest))


def _check_manifest(manifest: dict) -> None:
    clashes = [key for key in RESERVED if key in manifest]
    if clashes:
        raise ValueError(f"manifest keys {clashes} are written by the store; use other names")
    try:
        json.dumps(manifest, allow_nan=False)
    except (TypeError, ValueError) as e:
        raise ValueError(f"manifest is not JSON-serialisable: {e}") from None
