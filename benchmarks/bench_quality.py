"""Quality-filter benchmark: the repetition check (the stage's per-row cost at R1 lengths) and the whole
per-row filter, on one core, against baselines measured in the same run.

Corpus: synthetic R1-length teacher chains (``factory.synthetic_samples``: median ~4k words, long tail to 32k;
loops, language mixing, near-duplicates among them), ~25 KB of text a row. Arms, each over the same rows:

1. ``repeated_shares`` (the numba hash-set kernel the filter uses): word 4-grams and character 10-grams;
2. the exact sets of n-gram tuples (the textbook definition; also the correctness check: equal shares);
3. the numpy form the filter used until 2026-12-02 (64-bit polynomial n-gram hashes, sorted, distinct counted),
   kept here as the baseline it replaced;
4. ``QualityFilter`` end to end (think format, answer, lengths, both repetition checks) on 64-row Arrow batches.

Prints rows/s for each and the ratios; the scale goal (issue 16) is 2,000 rows/s per stage on the 2 cores, i.e.
1,000 rows/s per core. Run: ``.venv/bin/python benchmarks/bench_quality.py [--prompts 300]``.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

BASE = np.uint64(0x100000001B3)


def numpy_sorted_share(units, n: int) -> float:
    """The baseline: polynomial n-gram hashes over word ids or code points, sorted, distinct counted."""
    total = len(units) - n + 1
    if total <= 0:
        return 0.0
    if isinstance(units, str):
        codes = np.frombuffer(units.encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)
    else:
        ids: dict[str, int] = {}
        codes = np.fromiter((ids.setdefault(unit, len(ids)) for unit in units), dtype=np.uint64, count=len(units))
    hashes = np.zeros(total, dtype=np.uint64)
    for offset in range(n):
        hashes = hashes * BASE + codes[offset : offset + total]
    hashes.sort()
    return 1.0 - (1 + int(np.count_nonzero(hashes[1:] != hashes[:-1]))) / total


def exact_share(units, n: int) -> float:
    total = len(units) - n + 1
    return 1 - len({tuple(units[i : i + n]) for i in range(total)}) / total if total > 0 else 0.0


def rate(fn, texts: list[str]) -> tuple[float, list]:
    started = time.perf_counter()
    out = [fn(text) for text in texts]
    return len(texts) / (time.perf_counter() - started), out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=300)
    parser.add_argument("--samples", type=int, default=4)
    parser.add_argument("--median-words", type=int, default=4000)
    parser.add_argument("--max-words", type=int, default=32000)
    args = parser.parse_args()

    import pyarrow as pa

    from factory import synthetic_samples
    from factory.stages.filter.quality import QualityConfig, QualityFilter, repeated_shares

    prompt_rows = synthetic_samples.prompts(args.prompts, seed=0)
    rows = [s for per in synthetic_samples.sample_rows(prompt_rows, args.samples, seed=0, median_words=args.median_words,
                                                       max_words=args.max_words) for s in per]
    texts = [row["completion"] for row in rows]
    print(f"{len(texts)} chains, {sum(map(len, texts)) / len(texts) / 1000:.1f} KB mean, "
          f"{np.median([len(t.split()) for t in texts]):.0f} words median")
    repeated_shares("warm up the numba cache", 4, 10)

    kernel, shares = rate(lambda text: repeated_shares(text, 4, 10), texts)
    exact, reference = rate(lambda text: (exact_share(text.split(), 4), exact_share(text, 10)), texts)
    old, _ = rate(lambda text: (numpy_sorted_share(text.split(), 4), numpy_sorted_share(text, 10)), texts)
    worst = max(abs(a - b) for pair, ref in zip(shares, reference) for a, b in zip(pair, ref))
    print(f"repetition check, rows/s on 1 core: kernel {kernel:,.0f} | exact tuple sets {exact:,.0f} "
          f"({kernel / exact:.1f}x) | numpy sort, the old filter {old:,.0f} ({kernel / old:.1f}x); "
          f"largest share difference from the exact sets {worst:.2e}")

    table = pa.Table.from_pylist([{**row, "drop_reason": None, "drop_stage": None} for row in rows])
    batches = [table.slice(start, 64) for start in range(0, table.num_rows, 64)]
    check = QualityFilter(QualityConfig(), think_prefilled=True)
    started = time.perf_counter()
    marked = pa.concat_tables([check(batch) for batch in batches])
    whole = table.num_rows / (time.perf_counter() - started)
    reasons = marked.column("drop_reason").value_counts().to_pylist()
    print(f"QualityFilter end to end: {whole:,.0f} rows/s on 1 core (goal 1,000 per core: "
          f"{'met' if whole >= 1000 else 'missed'}); drops {sorted((r['values'], r['counts']) for r in reasons if r['values'])}")


if __name__ == "__main__":
    main()
