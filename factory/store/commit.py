"""The commit protocol: claim a version, publish the staged dir, repoint LATEST.

Protocol (all steps on one local filesystem):

1. The staged dir is complete: parts renamed, README.md, then ``_manifest.json`` (naming the
   version it is about to claim) written last.
2. **Claim** — the commit point: ``_claims/VERSION`` is created with ``os.link`` (atomic,
   fails if it exists) and records the staging dir's name. Exactly one writer gets a version.
3. **Publish**: ``os.rename(_staging/<id>, snapshots/VERSION)`` — readers see the whole
   snapshot or nothing. If the owner dies between 2 and 3, the next writer (``begin``, ``commit``
   or ``gc_staging``) rolls the claim forward by doing the rename for it; since the staging dir
   was complete before the claim, rolling forward is always safe.
4. **LATEST** is rewritten (temp file + ``os.replace``) after the publish, and re-checked until
   it names the newest published version, so it converges even when writers interleave.

What is not covered: remote object stores and filesystems without atomic directory rename or
hard links; a claim whose staging dir was deleted by hand (that version stays burnt).
"""

from __future__ import annotations

import errno
import json
import os

from factory.store.errors import StoreError
from factory.store.layout import MANIFEST, Layout, create_exclusive, dump_json, fsync_dir, read_json, write_atomic


def claim(layout: Layout, version: str, record: dict) -> bool:
    """Try to own ``version``; False if another writer already does."""
    return create_exclusive(layout.claim_path(version), dump_json(record))


def publish(layout: Layout, staged_dir: str, version: str) -> None:
    """Move a claimed, complete staging dir to ``snapshots/version`` (idempotent: succeeds if a
    concurrent roll-forward already moved it)."""
    target = layout.snapshot_dir(version)
    try:
        os.rename(staged_dir, target)
    except FileNotFoundError:
        if not os.path.isfile(os.path.join(target, MANIFEST)):
            raise StoreError(f"claimed staging dir {staged_dir} vanished before {version} was published") from None
    except OSError as e:
        if e.errno in (errno.ENOTEMPTY, errno.EEXIST):
            raise StoreError(
                f"{target} already exists although {version} was claimed for {staged_dir}: "
                "the store was modified outside the commit protocol"
            ) from None
        raise
    fsync_dir(layout.snapshots)


def roll_forward(layout: Layout) -> list[str]:
    """Publish claimed versions whose owner died before renaming; returns the versions published."""
    published = set(layout.published_versions())
    done = []
    for version in layout.claimed_versions():
        if version in published:
            continue
        try:
            record = read_json(layout.claim_path(version))
        except (FileNotFoundError, json.JSONDecodeError):
            continue
        staged = os.path.join(layout.staging, record["staging"])
        try:
            staged_version = read_json(os.path.join(staged, MANIFEST))["version"]
        except (FileNotFoundError, json.JSONDecodeError, KeyError):
            staged_version = None
        if staged_version == version:
            publish(layout, staged, version)
            done.append(version)
    return done


def pending_stagings(layout: Layout) -> set[str]:
    """Names of staging dirs that a claim points at but that are not published yet."""
    published = set(layout.published_versions())
    names = set()
    for version in layout.claimed_versions():
        if version not in published:
            try:
                names.add(read_json(layout.claim_path(version))["staging"])
            except (FileNotFoundError, json.JSONDecodeError, KeyError):
                continue
    return names


def update_latest(layout: Layout, attempts: int = 10) -> None:
    """Point LATEST at the newest published version; re-list after writing so that a writer
    that interleaved with us cannot leave LATEST behind."""
    for _ in range(attempts):
        versions = layout.published_versions()
        if not versions:
            return
        write_atomic(layout.latest_file, f"{versions[-1]}\n".encode())
        if layout.published_versions()[-1] == versions[-1]:
            return
    raise StoreError(f"LATEST of {layout.base} kept moving during {attempts} updates")
