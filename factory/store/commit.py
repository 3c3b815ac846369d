"""The commit protocol: claim a version, publish the staged dir, move LATEST by compare-and-swap.

One protocol, two backends (``layout.files``): :mod:`factory.store.local_files` (POSIX
``link``/``rename``) and :mod:`factory.store.object_files` (conditional PUTs on S3/GCS).

1. The staged dir is complete: parts placed (renamed locally; on object storage left where they
   were written and listed in ``_moves.json``), README.md, then ``_manifest.json`` (naming the
   version it is about to claim) written last.
2. **Claim** — the commit point: ``_claims/VERSION`` is created if absent (``os.link`` /
   ``If-None-Match: *``) and records the staging dir's name. Exactly one writer gets a version.
3. **Publish**: the staging dir becomes ``snapshots/VERSION`` (one rename locally; server-side
   copies with the manifest last on object storage) — readers see the whole snapshot or nothing.
   If the owner dies between 2 and 3, the next writer (``begin``, ``commit`` or ``gc_staging``)
   rolls the claim forward by publishing for it; since the staging dir was complete before the
   claim, rolling forward is always safe.
4. **LATEST** moves by compare-and-swap (a lock-guarded check locally, ``If-Match: <e-tag>`` on
   object storage) to the newest published version, and only forwards: a writer whose swap
   loses re-reads and retries, so LATEST converges on the newest version however writers interleave.

What is not covered: filesystems without atomic directory rename or hard links, object stores
without conditional PUTs; a claim whose staging dir was deleted by hand (that version stays burnt).
"""

from __future__ import annotations

import json

from factory.store.errors import StoreError
from factory.store.layout import MANIFEST, MOVES, Layout, dump_json, version_number


def claim(layout: Layout, version: str, record: dict) -> bool:
    """Try to own ``version``; False if another writer already does."""
    return layout.files.create(layout.claim_path(version), dump_json(record))


def publish(layout: Layout, staged_dir: str, version: str) -> None:
    """Make a claimed, complete staging dir ``snapshots/version`` (idempotent: succeeds if a
    concurrent roll-forward already published it)."""
    files = layout.files
    moves_path = files.join(staged_dir, MOVES)
    try:
        moves = layout.read_json(moves_path) if files.exists(moves_path) else {}
    except FileNotFoundError:  # a concurrent roll-forward finished and removed the staging dir
        moves = {}
    files.publish(staged_dir, layout.snapshot_dir(version), moves)


def roll_forward(layout: Layout) -> list[str]:
    """Publish claimed versions whose owner died before publishing; returns the versions published."""
    published = set(layout.published_versions())
    done = []
    for version in layout.claimed_versions():
        if version in published:
            continue
        try:
            record = layout.read_json(layout.claim_path(version))
        except (FileNotFoundError, json.JSONDecodeError):
            continue
        staged = layout.files.join(layout.staging, record["staging"])
        try:
            staged_version = layout.read_json(layout.files.join(staged, MANIFEST))["version"]
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
                names.add(layout.read_json(layout.claim_path(version))["staging"])
            except (FileNotFoundError, json.JSONDecodeError, KeyError):
                continue
    return names


def update_latest(layout: Layout, attempts: int = 10) -> None:
    """Move LATEST forward to the newest published version by compare-and-swap; a lost swap
    (another writer moved it in between) re-reads and retries."""
    for _ in range(attempts):
        versions = layout.published_versions()
        if not versions:
            return
        current, token = layout.files.read_versioned(layout.latest_file)
        if _number(current) >= version_number(versions[-1]):
            return
        if layout.files.swap(layout.latest_file, f"{versions[-1]}\n".encode(), token):
            return
    raise StoreError(f"LATEST of {layout.base} kept moving during {attempts} updates")


def _number(latest: bytes | None) -> int:
    """The version number LATEST names; 0 for none or for unreadable content (then overwritten)."""
    try:
        return version_number(latest.decode().strip()) if latest is not None else 0
    except (UnicodeDecodeError, ValueError):
        return 0
