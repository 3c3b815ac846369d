"""Subprocess writer used by the crash and race tests (not a test module).

usage: store_writer.py ROOT ROWS START CRASH_AT [GO_FILE]
ROOT is a path or an s3:// URI (the endpoint comes from AWS_ENDPOINT_URL). Stages ROWS rows
starting at sample START, then either dies with ``os._exit`` at CRASH_AT ("staged", "claim",
"publish", "latest", or on object storage "copy": after the first server-side copy of the
publish) or commits ("none"). With GO_FILE it first writes
GO_FILE.ready-<pid> and waits for GO_FILE to exist, so several writers commit at the same moment.
Prints one JSON line: {"version": ...} or {"conflict": message}.
"""

from __future__ import annotations

import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))

from store_data import MANIFEST, SMALL_FILES, dataset_rows  # noqa: E402

from factory.schema import DATASET_SCHEMA  # noqa: E402
from factory.store import CommitConflict, SnapshotStore  # noqa: E402
from factory.store import commit as protocol  # noqa: E402


def _die(*_args, **_kwargs):
    os._exit(3)


def main() -> None:
    root, rows, start, crash_at = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    store = SnapshotStore(root, "demo", SMALL_FILES)
    staged = store.begin(schema=DATASET_SCHEMA)
    staged.write_table(dataset_rows(rows, start))
    if crash_at == "staged":
        _die()
    if crash_at in ("claim", "publish"):
        setattr(protocol, crash_at, _die)
    if crash_at == "latest":
        protocol.update_latest = _die
    if crash_at == "copy":
        real_copy = store.files._copy

        def copy_then_die(*args):
            real_copy(*args)
            _die()

        store.files._copy = copy_then_die
    if len(sys.argv) > 5:
        go = sys.argv[5]
        open(f"{go}.ready-{os.getpid()}", "w").close()
        while not os.path.exists(go):
            time.sleep(0.005)
    try:
        print(json.dumps({"version": staged.commit(MANIFEST).version}))
    except CommitConflict as e:
        print(json.dumps({"conflict": str(e)}))


if __name__ == "__main__":
    main()
