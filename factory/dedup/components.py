"""LSH band keys → candidate groups → connected components → one representative per component.

Contract:
- :func:`band_keys` turns (N, num_perm) signatures into (N, bands) uint64 keys; band i hashes
  signature values ``[i*rows, (i+1)*rows)`` (datasketch's ``hashranges``) with the band index, so
  two rows share band key i exactly when they agree on all ``rows`` values of band i, up to hash
  collisions: the hash is multilinear (fixed random odd 64-bit multipliers, sum mod 2^64, then
  fmix64), so two different bands collide with probability ~2^-64 when their values differ in an
  odd amount somewhere (2^-33 at worst); at 100M rows that is far below one false candidate pair.
  Exact dedup is the same machinery with one "band" (the text hash).
- :func:`components` links rows sharing any band key and returns a component label per row;
  :func:`representatives` keeps the first row of each component under a caller-given order.

Scaling (why this runs on the driver and where it stops):
- Grouping is one band at a time: a stable argsort of N uint64 keys and a star of edges
  (first member → other members) for each group of size >= 2. Rows in no group add no edges, and
  every band adds at most N - 1 edges. At 100M rows a band is 800 MB of keys plus an 800 MB
  argsort (~10-15 s on one core); the 9 bands of the default (0.8, 128 perms) run one after the
  other, so peak memory stays ~2 GB plus the edges kept (8 bytes per edge, int32 ids; typical web
  or prompt data has < 30% near-duplicate rows, so < 30M distinct edges per band, deduplicated
  before the union step).
- Union-find is vectorised "hook and compress": each round hooks every root to the smallest root
  it shares an edge with (``np.minimum.at``), then compresses paths by pointer jumping until every
  row points at its root. Roots only ever move to smaller ids, so it terminates; each round costs
  O(N + E) array work and real dedup graphs (stars and small cliques) converge in a handful of
  rounds. Memory is O(N + E): ~1.2 GB at 100M rows and 100M edges.
- The (N, bands) key matrix, the ranking columns and the ids are collected on the driver:
  ~120 bytes per row, so ~12 GB at 100M rows. That is the scaling limit of this implementation
  (a 32-64 GB driver). Beyond it, each band's grouping is independent and can run as one Ray task
  per band (only the edge lists come back); the union step then needs only the edges.
"""

from __future__ import annotations

import numpy as np

from factory.dedup.hashing import fmix64

_BAND_SEED = 20240601  # fixed: band keys must be comparable across runs and snapshots


def band_keys(signatures: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """(N, bands) uint64 band keys of (N, num_perm) uint32 signatures; needs bands * rows <= num_perm."""
    n, num_perm = signatures.shape
    if bands * rows > num_perm:
        raise ValueError(f"bands × rows = {bands * rows} exceeds num_perm = {num_perm}")
    multipliers = np.random.RandomState(_BAND_SEED).randint(0, 1 << 62, (bands, rows), dtype=np.uint64) * 2 + 1
    keys = np.empty((n, bands), dtype=np.uint64)
    for band in range(bands):
        block = signatures[:, band * rows : (band + 1) * rows].astype(np.uint64)
        keys[:, band] = fmix64((block * multipliers[band]).sum(axis=1, dtype=np.uint64) + np.uint64(band))
    return keys


def _run_starts(sorted_values: np.ndarray) -> np.ndarray:
    """True where a run of equal values starts (empty input gives an empty mask)."""
    starts = np.ones(sorted_values.size, dtype=bool)
    starts[1:] = sorted_values[1:] != sorted_values[:-1]
    return starts


def _group_edges(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Star edges (first member, other member) of every group of equal keys in one column."""
    order = np.argsort(keys)
    sorted_keys = keys[order]
    new_group = _run_starts(sorted_keys)
    group_start = np.maximum.accumulate(np.where(new_group, np.arange(order.size), 0))
    inner = ~new_group
    return order[group_start[inner]], order[inner]


def union_find(n: int, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Component label (the smallest row index in it) of each of n rows linked by edges (u, v)."""
    parent = np.arange(n, dtype=np.int64)
    while u.size:
        pu, pv = parent[u], parent[v]
        differs = pu != pv
        u, v, pu, pv = u[differs], v[differs], pu[differs], pv[differs]
        if not u.size:
            break
        np.minimum.at(parent, np.maximum(pu, pv), np.minimum(pu, pv))
        while True:
            grand = parent[parent]
            if np.array_equal(grand, parent):
                break
            parent = grand
    return parent


def components(keys: np.ndarray) -> np.ndarray:
    """Component label per row of (N,) or (N, bands) keys: rows sharing any key column value are
    in one component."""
    keys = keys if keys.ndim == 2 else keys[:, None]
    n = keys.shape[0]
    us, vs = [], []
    for band in range(keys.shape[1]):
        u, v = _group_edges(keys[:, band])
        us.append(u)
        vs.append(v)
    u = np.concatenate(us) if us else np.zeros(0, np.int64)
    v = np.concatenate(vs) if vs else np.zeros(0, np.int64)
    if u.size:  # the same pair found in several bands is one edge
        pairs = np.unique(np.minimum(u, v).astype(np.int64) * n + np.maximum(u, v))
        u, v = pairs // n, pairs % n
    return union_find(n, u, v)


def representatives(labels: np.ndarray, order_keys: list[np.ndarray]) -> np.ndarray:
    """Boolean mask of the one row kept per component: the smallest under ``order_keys``
    (most significant first, ascending; the caller negates what should sort descending and ends
    with a unique key so the choice is deterministic)."""
    order = np.lexsort(tuple(reversed(order_keys)) + (labels,))
    sorted_labels = labels[order]
    first = _run_starts(sorted_labels)
    keep = np.zeros(labels.size, dtype=bool)
    keep[order[first]] = True
    return keep


def size_histogram(labels: np.ndarray) -> dict[str, int]:
    """Number of components of each size >= 2, in power-of-two buckets ("2", "3-4", "5-8", ...)."""
    sizes = np.bincount(np.unique(labels, return_inverse=True)[1]) if labels.size else np.zeros(0, np.int64)
    histogram: dict[str, int] = {}
    for size in sizes[sizes >= 2]:
        upper = 1 << int(size - 1).bit_length()
        lower = upper // 2 + 1
        name = str(upper) if lower == upper else f"{lower}-{upper}"
        histogram[name] = histogram.get(name, 0) + 1
    return dict(sorted(histogram.items(), key=lambda item: int(item[0].split("-")[0])))
