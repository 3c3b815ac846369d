"""Concurrent writers on object storage, with the interleaving forced by hooks rather than timing:
both writers pick their version before either claims it, then one claim PUT completes before the
other is sent. The conditional PUTs decide: create-if-absent for the claim, if-match for LATEST.
(moto checks a condition and stores the object in two steps, so the PUTs are serialised here;
real S3 evaluates the condition atomically.)"""

from __future__ import annotations

import threading

from store_data import MANIFEST, SMALL_FILES, dataset_rows

from factory.store import CommitConflict, SnapshotStore

WAIT_S = 30


def _stores(root: str, n: int = 2) -> list[SnapshotStore]:
    """Independent clients of one store (each with its own connections), as separate writers are."""
    return [SnapshotStore(root, "demo", SMALL_FILES) for _ in range(n)]


def _claims_in_order(first: SnapshotStore, second: SnapshotStore) -> None:
    """Hook both writers' first claim: each waits until both are about to claim (so both chose their
    version from the same listing), and ``second`` sends its claim only after ``first``'s returned."""
    ready, first_done = threading.Barrier(2, timeout=WAIT_S), threading.Event()
    for store, is_first in ((first, True), (second, False)):
        real, hooked = store.files.create, []

        def create(path, data, real=real, is_first=is_first, hooked=hooked):
            if "/_claims/" not in path or hooked:
                return real(path, data)
            hooked.append(path)
            ready.wait()
            if not is_first:
                assert first_done.wait(WAIT_S)
            try:
                return real(path, data)
            finally:
                first_done.set()

        store.files.create = create


def _commit_both(first: SnapshotStore, second: SnapshotStore, parent: str | None) -> list:
    stages = []
    for k, store in enumerate((first, second)):
        staged = store.begin(parent=parent)
        staged.write_table(dataset_rows(3, start=100 * k))
        stages.append(staged)
    results = [None, None]

    def commit(k: int) -> None:
        try:
            results[k] = stages[k].commit(MANIFEST).version
        except CommitConflict as e:
            results[k] = e

    threads = [threading.Thread(target=commit, args=(k,)) for k in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT_S * 2)
    return results


def test_two_writers_on_one_parent_exactly_one_wins(s3_root):
    first, second = _stores(s3_root)
    _claims_in_order(first, second)
    results = _commit_both(first, second, parent="latest")
    assert results[0] == "v000001" and isinstance(results[1], CommitConflict)
    assert "claimed v000001 first" in str(results[1])
    assert first.versions() == ["v000001"] and first.latest().read().num_rows == 3


def test_the_loser_leaves_no_staging_objects(s3_root):
    first, second = _stores(s3_root)
    _claims_in_order(first, second)
    _commit_both(first, second, parent="latest")
    assert second.files.names(second.layout.staging) == []


def test_unchecked_writers_both_publish_in_turn(s3_root):
    first, second = _stores(s3_root)
    _claims_in_order(first, second)
    assert _commit_both(first, second, parent=None) == ["v000001", "v000002"]
    assert first.get("v000002").manifest["parent"] == "v000001"
    assert first.files.read_bytes(first.layout.latest_file) == b"v000002\n"


def test_claim_is_create_if_absent(s3_store):
    path = s3_store.layout.claim_path("v000001")
    assert s3_store.files.create(path, b"first") is True
    assert s3_store.files.create(path, b"second") is False
    assert s3_store.files.read_bytes(path) == b"first"


def test_latest_swap_with_a_stale_etag_is_refused(s3_store):
    files, latest = s3_store.files, s3_store.layout.latest_file
    assert files.swap(latest, b"v000001\n", None)
    _, token = files.read_versioned(latest)
    assert files.swap(latest, b"v000002\n", token)
    assert not files.swap(latest, b"v000003\n", token)
    assert files.read_bytes(latest) == b"v000002\n"


def test_latest_never_moves_back_when_updates_interleave(s3_root):
    """A publishes v1 and reads LATEST (absent); before A swaps, B commits v2 and creates LATEST.
    A's create-if-absent swap is refused, A re-reads, sees v2 and leaves it."""
    first, second = _stores(s3_root)
    read_latest, go_on, swaps = threading.Event(), threading.Event(), []
    real_read, real_swap = first.files.read_versioned, first.files.swap

    def read_versioned(path):
        found = real_read(path)
        if not read_latest.is_set():
            read_latest.set()
            assert go_on.wait(WAIT_S)
        return found

    def swap(path, data, token):
        swapped = real_swap(path, data, token)
        if path == first.layout.latest_file:
            swaps.append(swapped)
        return swapped

    first.files.read_versioned, first.files.swap = read_versioned, swap
    staged = first.begin()
    staged.write_table(dataset_rows(2))
    writer = threading.Thread(target=staged.commit, args=(MANIFEST,))
    writer.start()
    assert read_latest.wait(WAIT_S)
    with second.begin() as later:  # A's v1 is published: B builds on it
        later.write_table(dataset_rows(2, start=50))
        assert later.commit(MANIFEST).version == "v000002"
    go_on.set()
    writer.join(WAIT_S)
    assert swaps == [False]
    assert first.files.read_bytes(first.layout.latest_file) == b"v000002\n"

