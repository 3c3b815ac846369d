"""MinHash dedup benchmark: our vectorised signatures and LSH vs datasketch, measured in one run.

Corpus: synthetic ~2 KB documents (Zipf-distributed words) plus planted near-duplicate copies
whose true 5-word-shingle Jaccard spreads over [0.5, 1]. Prints:
1. signatures, 1 core: docs/s of ``MinHasher.text_signatures`` (and of its pure-numpy path) vs datasketch's per-shingle ``MinHash.update`` loop
   (goal >= 60x) and vs ``update_batch`` (goal >= 5x); both baselines use datasketch's default
   SHA1 shingle hash, as a user of datasketch would;
2. LSH + components vs datasketch ``MinHashLSH`` insert + query (same signatures; goal >= 20x);
3. quality: recall of planted pairs with Jaccard >= threshold vs the S-curve 1-(1-J^r)^b averaged
   over those pairs (goal: within 2 points), and pairs of unrelated documents merged (goal: 0);
4. scaling: the signature stage in Ray Data with 1 vs 2 workers (4x the corpus; best of 2 runs each).
   On a shared 2-core machine this figure mostly measures the neighbours' load;
5. R1-length chains (``--chain-words``, median words of ``bench_scale.py``'s synthetic chains): the kernel's
   docs/s vs the same kernel with the earlier loop order (permutations inside the loop over shingles, a
   branch and a store per value; the kernel before it was restructured), signatures checked equal; and the
   exact-dedup normalisation (``normalize_exact``) vs its earlier regex form, and the dedup stage's per-row
   work (``features``) with each, outputs checked equal.

Run: ``.venv/bin/python benchmarks/bench_minhash.py [--docs 20000] [--skip-ray] [--chain-docs 2000]``.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np


def make_corpus(n_docs: int, n_pairs: int, seed: int = 0) -> tuple[list[str], list[tuple[int, int]]]:
    rng = np.random.default_rng(seed)
    vocab = np.array([f"{chr(97 + i % 26)}{i:x}" for i in range(50_000)])
    weights = 1.0 / np.arange(1, vocab.size + 1)
    weights /= weights.sum()
    docs = [" ".join(rng.choice(vocab, size=460, p=weights)) for _ in range(n_docs)]
    pairs = []
    for pair in range(n_pairs):
        source = int(rng.integers(n_docs))
        words = docs[source].split()
        changes = int(rng.integers(0, 12))  # each changed word alters up to 5 shingles
        for position in rng.choice(len(words), size=changes, replace=False):
            words[position] = f"edit{pair}x{position}"
        docs.append(" ".join(words))
        pairs.append((source, len(docs) - 1))
    return docs, pairs


def timed(fn, *args):
    start = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - start


def datasketch_update_loop(docs, num_perm, ngram):
    from datasketch import MinHash

    for doc in docs:
        m = MinHash(num_perm=num_perm, seed=1)
        words = doc.lower().split()
        for i in range(max(len(words) - ngram + 1, 1)):
            m.update(" ".join(words[i : i + ngram]).encode("utf-8"))


def datasketch_update_batch(docs, num_perm, ngram):
    from datasketch import MinHash

    for doc in docs:
        m = MinHash(num_perm=num_perm, seed=1)
        words = doc.lower().split()
        m.update_batch([" ".join(words[i : i + ngram]).encode("utf-8") for i in range(max(len(words) - ngram + 1, 1))])


def ours(docs, num_perm, ngram):
    """The stage's path: fused compiled word-shingle kernel."""
    from factory.dedup.minhash import MinHasher

    return MinHasher(num_perm, 1).text_signatures(docs, "word", ngram)


def ours_numpy(docs, num_perm, ngram):
    """The pure-numpy path (shingles, then signatures): the reason the kernel exists."""
    from factory.dedup.minhash import MinHasher
    from factory.dedup.shingles import shingles

    return MinHasher(num_perm, 1).signatures(shingles(docs, "word", ngram))


def shingle_outer_kernel():
    """The baseline of measure 5: the word-MinHash kernel as it was before its loops were swapped (for each
    shingle, every permutation's value compared and stored), compiled here; otherwise the package's kernel."""
    import numba

    from factory.dedup.minhash_kernel import EMPTY, document_words, shingle_hash

    @numba.njit(nogil=True)
    def kernel(cps, starts, lengths, table, ngram, a, b, out):
        words = np.empty(lengths.max() // 2 + 2 if lengths.size else 1, np.uint64)
        mins = np.empty(a.size, np.uint32)
        for d in range(starts.size):
            n_words = document_words(cps, starts[d], starts[d] + lengths[d], table, words)
            mins[:] = EMPTY
            width = min(ngram, n_words)
            for first in range(n_words - width + 1 if n_words else 0):
                hv = shingle_hash(words, first, width)
                for k in range(a.size):
                    v = np.uint32(a[k] * hv + b[k])
                    if v < mins[k]:
                        mins[k] = v
            out[d] = mins

    return kernel


def chain_kernels(n_docs: int, median_words: int, num_perm: int, ngram: int) -> dict:
    """Measure 5: docs/s of the package's kernel and of the shingle-outer baseline on R1-length chains, 1 core
    (best of 3 passes each, both compiled first); their signatures must be equal."""
    from factory.dedup.hashing import normalize_exact
    from factory.dedup.minhash import MinHasher
    from factory.dedup.minhash_kernel import word_minhash
    from factory.dedup.shingles import chunk_bounds, codepoints, word_char_table

    rng = np.random.default_rng(1)
    vocab = np.array([f"{chr(97 + i % 26)}{i:x}" for i in range(20_000)] + ["=", "+", "so", "step", "\\boxed{12}"])
    lengths = np.clip(rng.lognormal(np.log(median_words), 0.6, n_docs).astype(int), 50, 8 * median_words)
    words = [rng.choice(vocab, size=int(n)) for n in lengths]
    docs = ["\n".join(" ".join(w[i:i + 12]) for i in range(0, w.size, 12)) for w in words]  # lines of 12 words
    hasher, table = MinHasher(num_perm, 1), word_char_table()
    chunks = [codepoints(docs[begin:end]) + (begin, end) for begin, end in chunk_bounds(docs)]
    rates, outputs = {}, {}
    for name, kernel in (("kernel", word_minhash), ("shingle_outer_baseline", shingle_outer_kernel())):
        out = np.empty((n_docs, num_perm), np.uint32)
        kernel(*chunks[0][:3], table, ngram, hasher.a, hasher.b, out[chunks[0][3]:chunks[0][4]])  # compile
        best = float("inf")
        for _ in range(3):
            start = time.perf_counter()
            for cps, starts, lens, begin, end in chunks:
                kernel(cps, starts, lens, table, ngram, hasher.a, hasher.b, out[begin:end])
            best = min(best, time.perf_counter() - start)
        rates[name], outputs[name] = n_docs / best, out
    assert np.array_equal(outputs["kernel"], outputs["shingle_outer_baseline"])
    normalised = {}
    for name, normalise in (("normalize_exact", normalize_exact), ("regex_baseline", regex_normalize)):
        start = time.perf_counter()
        normalised[name] = [normalise(d) for d in docs]
        rates[name] = n_docs / (time.perf_counter() - start)
    assert normalised["normalize_exact"] == normalised["regex_baseline"]
    rates.update(stage_features(docs))
    return {"docs": n_docs, "mean_chars": float(np.mean([len(d) for d in docs])), "docs_per_s_1_core": rates,
            "kernel_speedup_vs_shingle_outer": rates["kernel"] / rates["shingle_outer_baseline"],
            "normalize_speedup_vs_regex": rates["normalize_exact"] / rates["regex_baseline"],
            "stage_features_speedup_vs_regex": rates["stage_features"] / rates["stage_features_regex_baseline"]}


def stage_features(docs: list[str]) -> dict:
    """Rows/s of the dedup stage's per-row work (``factory.stages.dedup.features``: exact keys and band keys of
    prompts and completions) on the chains as completions, 4 per prompt, in batches of 1,024; and the same with
    the exact keys' normalisation in its earlier regex form (patched in for the baseline only). Equal outputs."""
    import pyarrow as pa

    from factory.dedup import hashing
    from factory.stages.dedup import DedupConfig, features

    n = len(docs)
    table = pa.table({"prompt_id": [f"p{i // 4}" for i in range(n)], "sample_id": [f"s{i}" for i in range(n)],
                      "prompt": [f"What is {i // 4} + 1?" for i in range(n)], "completion": docs,
                      "drop_reason": pa.nulls(n, pa.string()), "reward": [0.5] * n})
    cfg, rates, outputs = DedupConfig(), {}, {}
    features(table.slice(0, 8), cfg)  # kernel loaded, tables built
    for name, normalise in (("stage_features", hashing.normalize_exact),
                            ("stage_features_regex_baseline", regex_normalize)):
        original, hashing.normalize_exact = hashing.normalize_exact, normalise
        try:
            start = time.perf_counter()
            outputs[name] = [features(table.slice(begin, 1024), cfg) for begin in range(0, n, 1024)]
            rates[name] = n / (time.perf_counter() - start)
        finally:
            hashing.normalize_exact = original
    assert all(a.equals(b) for a, b in zip(*outputs.values(), strict=True))
    return rates


def regex_normalize(text: str) -> str:
    """The baseline of measure 5's normalisation: ``normalize_exact`` as it was, with a whitespace regex."""
    import re
    import unicodedata

    return re.sub(r"\s+", " ", unicodedata.normalize("NFKC", text).lower()).strip()


def datasketch_lsh(sig, threshold, num_perm):
    from datasketch import LeanMinHash, MinHashLSH

    lean = [LeanMinHash(seed=1, hashvalues=row, scheme="affine32") for row in sig]
    start = time.perf_counter()
    lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
    for i, m in enumerate(lean):
        lsh.insert(i, m)
    neighbours = [lsh.query(m) for m in lean]
    return neighbours, time.perf_counter() - start


def our_lsh(sig, bands, rows):
    from factory.dedup.components import band_keys, components

    return components(band_keys(sig, bands, rows))


def true_jaccard(docs, pairs, ngram):
    from factory.dedup.shingles import shingles

    flat = sorted({i for pair in pairs for i in pair})
    sh = shingles([docs[i] for i in flat], "word", ngram)
    sets = {doc: set(sh.hashes[sh.doc == k].tolist()) for k, doc in enumerate(flat)}
    return np.array([len(sets[a] & sets[b]) / len(sets[a] | sets[b]) for a, b in pairs])


def ray_scaling(docs, num_perm, ngram, batch_size=1000):
    import ray

    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False
    blocks = ray.data.from_items([{"text": d} for d in docs], override_num_blocks=max(4, len(docs) // batch_size))
    blocks = blocks.materialize()

    def signatures(batch):
        sig = ours(list(batch["text"]), num_perm, ngram)
        return {"sig0": sig[:, 0]}

    times = {}
    for workers in (1, 2, 1, 2):
        strategy = ray.data.TaskPoolStrategy(size=workers)
        _, seconds = timed(lambda: blocks.map_batches(signatures, batch_size=batch_size, compute=strategy).materialize())
        times[workers] = min(times.get(workers, np.inf), seconds)
    ray.shutdown()
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=16_000)
    parser.add_argument("--pairs", type=int, default=4_000)
    parser.add_argument("--baseline-docs", type=int, default=300)
    parser.add_argument("--num-perm", type=int, default=128)
    parser.add_argument("--ngram", type=int, default=5)
    parser.add_argument("--threshold", type=float, default=0.8)
    parser.add_argument("--skip-ray", action="store_true")
    parser.add_argument("--chain-docs", type=int, default=2_000, help="R1-length chains for measure 5 (0: skip)")
    parser.add_argument("--chain-words", type=int, default=4_000, help="their median length in words")
    args = parser.parse_args()
    from factory.dedup.minhash import collision_probability, lsh_params

    docs, pairs = make_corpus(args.docs, args.pairs)
    print(f"corpus: {len(docs)} docs, mean {np.mean([len(d) for d in docs]):.0f} chars, {len(pairs)} planted pairs")
    results = {}
    ours(docs[:200], args.num_perm, args.ngram)  # compile the kernel, build per-process tables
    ours_numpy(docs[:200], args.num_perm, args.ngram)
    sig, t_ours = timed(ours, docs, args.num_perm, args.ngram)
    sig_numpy, t_numpy = timed(ours_numpy, docs, args.num_perm, args.ngram)
    assert np.array_equal(sig, sig_numpy)
    sample = docs[: args.baseline_docs]
    _, t_loop = timed(datasketch_update_loop, sample, args.num_perm, args.ngram)
    _, t_batch = timed(datasketch_update_batch, sample, args.num_perm, args.ngram)
    rate = {
        "ours": len(docs) / t_ours,
        "ours_numpy_only": len(docs) / t_numpy,
        "datasketch_update_loop": len(sample) / t_loop,
        "datasketch_update_batch": len(sample) / t_batch,
    }
    results["signatures_docs_per_s_1_core"] = rate
    results["signatures_speedup_vs_update_loop"] = rate["ours"] / rate["datasketch_update_loop"]
    results["signatures_speedup_vs_update_batch"] = rate["ours"] / rate["datasketch_update_batch"]
    results["numpy_path_speedup_vs_update_loop"] = rate["ours_numpy_only"] / rate["datasketch_update_loop"]

    bands, rows = lsh_params(args.threshold, args.num_perm)
    labels, t_our_lsh = timed(our_lsh, sig, bands, rows)
    _, t_ds_lsh = datasketch_lsh(sig, args.threshold, args.num_perm)
    results["lsh_seconds"] = {"ours": t_our_lsh, "datasketch_insert_query": t_ds_lsh}
    results["lsh_speedup"] = t_ds_lsh / t_our_lsh

    jaccard = true_jaccard(docs, pairs, args.ngram)
    found = np.array([labels[a] == labels[b] for a, b in pairs])
    above = jaccard >= args.threshold
    expected = float(collision_probability(jaccard[above], bands, rows).mean())
    members = np.bincount(labels, minlength=len(docs))
    planted_docs = {i for pair in pairs for i in pair}
    source_of = {b: a for a, b in pairs}
    root = np.array([source_of.get(i, i) for i in range(len(docs))])
    while True:  # a copy's source may itself be a copy: follow to the original document
        nxt = np.array([source_of.get(int(r), int(r)) for r in root])
        if np.array_equal(nxt, root):
            break
        root = nxt
    unrelated = 0
    for label in np.flatnonzero(members >= 2):
        unrelated += len(set(root[labels == label].tolist())) - 1
    results["quality"] = {
        "lsh_bands_rows": [bands, rows],
        "pairs_above_threshold": int(above.sum()),
        "recall_above_threshold": float(found[above].mean()),
        "s_curve_expected": expected,
        "recall_minus_expected_points": 100 * (float(found[above].mean()) - expected),
        "pairs_below_threshold_found": float(found[~above].mean()) if (~above).any() else None,
        "unrelated_originals_merged": int(unrelated),
        "docs_in_planted_pairs": len(planted_docs),
    }
    if not args.skip_ray:
        times = ray_scaling(docs * 4, args.num_perm, args.ngram)  # enough work per task to hide task overhead
        results["ray_signature_stage_seconds"] = times
        results["ray_speedup_2_vs_1_workers"] = times[1] / times[2]
    if args.chain_docs:
        results["r1_length_chains"] = chain_kernels(args.chain_docs, args.chain_words, args.num_perm, args.ngram)
    print(json.dumps(results, indent=2, default=float))


if __name__ == "__main__":
    main()
