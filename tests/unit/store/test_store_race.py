"""Concurrent writers: for one parent, exactly one commit wins; losers fail cleanly."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time

from store_data import MANIFEST, dataset_rows

from factory.store import CommitConflict

WRITER = os.path.join(os.path.dirname(__file__), "store_writer.py")


def test_racing_processes_exactly_one_wins(store, tmp_path):
    go = str(tmp_path / "go")
    writers = [subprocess.Popen([sys.executable, WRITER, store.layout.root, "3", str(100 * k), "none", go],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for k in range(3)]
    deadline = time.monotonic() + 120
    while len([n for n in os.listdir(tmp_path) if n.startswith("go.ready-")]) < len(writers):
        assert time.monotonic() < deadline and all(w.poll() is None for w in writers)
        time.sleep(0.01)
    open(go, "w").close()
    results = [json.loads(w.communicate(timeout=120)[0]) for w in writers]
    assert sorted("version" in r for r in results) == [False, False, True]
    assert store.versions() == ["v000001"] and store.latest().read().num_rows == 3
    assert os.listdir(store.layout.staging) == []


def _race_threads(store, parent, writers: int = 6) -> list:
    barrier = threading.Barrier(writers)
    staged = []
    for k in range(writers):
        stage = store.begin(parent=parent)
        stage.write_table(dataset_rows(2, start=10 * k))
        staged.append(stage)
    results = [None] * writers

    def commit(k: int) -> None:
        barrier.wait()
        try:
            results[k] = staged[k].commit(MANIFEST).version
        except CommitConflict as e:
            results[k] = e

    threads = [threading.Thread(target=commit, args=(k,)) for k in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def test_racing_threads_on_one_parent_exactly_one_wins(store):
    results = _race_threads(store, parent="latest")
    assert [r for r in results if isinstance(r, str)] == ["v000001"]
    assert store.versions() == ["v000001"] and os.listdir(store.layout.staging) == []


def test_racing_unchecked_writers_all_publish_distinct_versions(store):
    results = _race_threads(store, parent=None)
    assert sorted(results) == [f"v{k:06d}" for k in range(1, 7)]
    assert store.versions() == sorted(results)
    with open(store.layout.latest_file) as handle:
        assert handle.read() == "v000006\n"
