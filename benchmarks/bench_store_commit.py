"""What a snapshot commit costs, per byte, locally and on object storage (moto S3 on 127.0.0.1).

For each backend it stages FILES Parquet parts of synthetic reasoning rows (ROW_KB of text each),
then times, in the same run:

- ``write``: the driver writing the parts (the baseline every commit follows);
- ``read``: one streamed sha256 read of the same bytes through the backend (the floor for a
  commit that checksums every byte);
- ``finalize``: the commit's listing + footer checks + naming + sha256 (parts.finalize);
- ``publish``: rename (local) or server-side copies with the manifest last (S3);
- ``commit``: the whole ``staged.commit`` (claim, publish, LATEST included).

and prints seconds, MB/s and the ratios finalize/read and commit/write, plus how far the commit
raised the writer's peak RSS above its write phase (the commit never loads the dataset). Each
measurement runs in its own spawned process, so the in-process S3 server's memory is not counted.

usage: python benchmarks/bench_store_commit.py [--files 16] [--rows-per-file 1000] [--row-kb 16] [--s3/--no-s3]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import resource
import sys
import tempfile
import time
import uuid

import pyarrow as pa

from factory.store import SnapshotStore, WriteOptions
from factory.store import commit as protocol
from factory.store import staging as staging_module


def _rows(n: int, row_kb: int, seed: int) -> pa.Table:
    """``n`` rows of ``row_kb`` KB of random hex text (zstd halves it, as it roughly does real chains)."""
    return pa.table({"sample_id": [f"s{seed}-{i}" for i in range(n)],
                     "completion": [os.urandom(row_kb * 512).hex() for _ in range(n)]})


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(root: str, files: int, rows_per_file: int, row_kb: int) -> dict:
    store = SnapshotStore(root, "bench", WriteOptions(rows_per_file=rows_per_file, row_group_rows=256))
    staged = store.begin(parent=None)
    start = time.perf_counter()
    for k in range(files):
        staged.write_table(_rows(rows_per_file, row_kb, k))
    written = time.perf_counter() - start
    paths = [staged.files.join(staged.data_dir, rel) for rel in staged.files.walk(staged.data_dir)]
    size = sum(staged.files.size(p) for p in paths)
    start = time.perf_counter()
    for path in paths:
        staged.files.sha256(path)
    read = time.perf_counter() - start
    phases: dict[str, float] = {}

    def timed(name, fn):
        def wrapper(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                phases[name] = phases.get(name, 0.0) + time.perf_counter() - t0
        return wrapper

    real_finalize, real_publish = staging_module.finalize, protocol.publish
    staging_module.finalize, protocol.publish = timed("finalize", real_finalize), timed("publish", real_publish)
    rss_before = _peak_rss_mb()
    start = time.perf_counter()
    try:
        staged.commit({})
    finally:
        staging_module.finalize, protocol.publish = real_finalize, real_publish
    commit = time.perf_counter() - start
    mb = size / 1e6
    return {"backend": store.files.scheme, "files": files, "MB": round(mb, 1), "write_s": written, "read_s": read,
            "finalize_s": phases["finalize"], "publish_s": phases["publish"], "commit_s": commit,
            "rss_growth_mb": _peak_rss_mb() - rss_before}


def _in_fresh_process(*args) -> dict:
    """``measure(*args)`` in a spawned process created now (with the environment as it is now)."""
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(measure, args)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=16)
    parser.add_argument("--rows-per-file", type=int, default=1000)
    parser.add_argument("--row-kb", type=int, default=16)
    parser.add_argument("--s3", action=argparse.BooleanOptionalAction, default=True)
    args = parser.parse_args(argv)
    shape = (args.files, args.rows_per_file, args.row_kb)
    with tempfile.TemporaryDirectory() as tmp:
        results = [_in_fresh_process(tmp, *shape)]
    if args.s3:
        sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests", "unit", "store"))
        from s3_server import moto_s3

        with moto_s3("bench"):  # started before the writer process, which inherits endpoint and credentials
            results.append(_in_fresh_process(f"s3://bench/{uuid.uuid4().hex[:8]}", *shape))
    print(f"{'backend':8} {'MB':>7} {'write s':>8} {'read s':>7} {'final. s':>8} {'publ. s':>8} {'commit s':>8} "
          f"{'commit MB/s':>11} {'final./read':>11} {'commit/write':>12} {'RSS +MB':>8}")
    for r in results:
        print(f"{r['backend']:8} {r['MB']:7.1f} {r['write_s']:8.2f} {r['read_s']:7.2f} {r['finalize_s']:8.2f} "
              f"{r['publish_s']:8.2f} {r['commit_s']:8.2f} {r['MB'] / r['commit_s']:11.0f} "
              f"{r['finalize_s'] / r['read_s']:11.2f} {r['commit_s'] / r['write_s']:12.2f} {r['rss_growth_mb']:8.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
