"""Driver-side dedup decisions from the per-row features computed by the Ray stage.

Input: a features table (one row per dataset row; see ``factory.stages.dedup``) with columns
``prompt_id, sample_id, live, reward, prompt_len, completion_len, prompt_exact, completion_exact``
and optionally ``prompt_bands`` / ``completion_bands`` (fixed-size lists of uint64); response keys
are already scoped by prompt_id. Plus the earlier snapshots' keys in the same form.

Levels run in this order, each on the units that survived the previous ones: exact prompts, near
prompts (a prompt's units are its distinct prompt_ids; dropping one drops all its samples), exact
responses, near responses (within one prompt, by scoping). In a group/component that contains an
earlier snapshot's row, every new unit is dropped as ``dup_previous_snapshot``; otherwise all but
the representative (first under the keep rule, ties broken by smallest id) are dropped with the
level's reason. Dropped rows (``live`` false) take no part and are never representatives.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from factory.dedup.components import components, representatives, size_histogram

PREVIOUS = "dup_previous_snapshot"


@dataclass
class Decisions:
    """Ids to drop, by reason, at each granularity, and the stats for the manifest."""

    prompt_drops: dict[str, list[str]] = field(default_factory=dict)
    sample_drops: dict[str, list[str]] = field(default_factory=dict)
    stats: dict = field(default_factory=dict)


def _matrix(column: pa.ChunkedArray | pa.Array, rows: np.ndarray | None = None) -> np.ndarray:
    """(N, k) uint64 matrix of a fixed-size-list column (or (N, 1) of a plain uint64 column)."""
    array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if pa.types.is_fixed_size_list(array.type):
        matrix = array.flatten().to_numpy(zero_copy_only=False).reshape(len(array), array.type.list_size)
    else:
        matrix = array.to_numpy(zero_copy_only=False).reshape(-1, 1)
    return matrix if rows is None else matrix[rows]


def _rank(ids: pa.Array) -> np.ndarray:
    order = pc.sort_indices(ids).to_numpy()
    rank = np.empty(order.size, dtype=np.int64)
    rank[order] = np.arange(order.size)
    return rank


def _order_keys(keep_rule: tuple[str, ...], reward: np.ndarray, length: np.ndarray, ids: pa.Array) -> list[np.ndarray]:
    keys = []
    for rule in keep_rule:
        if rule == "highest_reward":
            keys.append(np.where(np.isnan(reward), np.inf, -reward))
        elif rule == "shortest":
            keys.append(length)
        elif rule == "longest":
            keys.append(-length)
        else:
            raise ValueError(f"keep_rule: unknown rule {rule!r}")
    return keys + [_rank(ids)]


def _level(new_keys: np.ndarray, prior_keys: np.ndarray, order_keys: list[np.ndarray]):
    """(drop mask, previous-snapshot mask, cluster-size histogram) for the new units."""
    n = new_keys.shape[0]
    labels = components(np.concatenate([new_keys, prior_keys.reshape(-1, new_keys.shape[1])]))
    has_prior = np.zeros(labels.size, dtype=bool)
    has_prior[labels[n:]] = True
    previous = has_prior[labels[:n]]
    keep = representatives(labels[:n], order_keys) & ~previous
    return ~keep, previous, size_histogram(labels)


def resolve(features: pa.Table, prior_prompts: dict[str, np.ndarray], prior_responses: dict[str, np.ndarray],
            levels: dict[str, bool], keep_rule: tuple[str, ...]) -> Decisions:
    """Decide which prompts and samples to drop. ``prior_*`` map ``exact`` / ``bands`` to the
    earlier snapshots' keys ((M,) and (M, bands) uint64, scoped like the new ones)."""
    decisions = Decisions()
    live_rows = np.flatnonzero(features["live"].to_numpy(zero_copy_only=False))
    live = features.take(live_rows)
    prompt_ids = live["prompt_id"].combine_chunks()
    codes = pc.dictionary_encode(prompt_ids).indices.to_numpy()
    unique_codes, first = np.unique(codes, return_index=True)
    reward = live["reward"].to_numpy(zero_copy_only=False).astype(float)
    best_reward = np.full(unique_codes.size, -np.inf)
    np.fmax.at(best_reward, codes, np.nan_to_num(reward, nan=-np.inf))
    best_reward[np.isneginf(best_reward)] = np.nan
    rows_per_prompt = np.bincount(codes, minlength=unique_codes.size)
    counts: dict[str, int] = {}
    histograms: dict[str, dict[str, int]] = {}

    prompt_alive = np.ones(unique_codes.size, dtype=bool)
    prompt_order = _order_keys(keep_rule, best_reward, live["prompt_len"].to_numpy()[first], prompt_ids.take(first))
    for level, column, reason in (("exact_prompts", "prompt_exact", "dup_exact_prompt"),
                                  ("near_prompts", "prompt_bands", "dup_near_prompt")):
        if not levels[level]:
            continue
        units = np.flatnonzero(prompt_alive)
        kind = "exact" if level.startswith("exact") else "bands"
        drop, previous, histogram = _level(_matrix(live[column], first[units]), prior_prompts[kind],
                                           [key[units] for key in prompt_order])
        if kind == "bands":
            histograms["near_prompt"] = histogram
        for mask, why in ((drop & ~previous, reason), (previous, PREVIOUS)):
            ids = prompt_ids.take(first[units[mask]]).to_pylist()
            decisions.prompt_drops.setdefault(why, []).extend(ids)
            counts[why] = counts.get(why, 0) + int(rows_per_prompt[units[mask]].sum())
        prompt_alive[units[drop]] = False

    sample_alive = prompt_alive[codes] & live["completion_len"].is_valid().to_numpy(zero_copy_only=False)
    completion_len = live["completion_len"].fill_null(0).to_numpy()
    sample_order = _order_keys(keep_rule, reward, completion_len, live["sample_id"].combine_chunks())
    for level, column, reason in (("exact_responses", "completion_exact", "dup_exact_response"),
                                  ("near_responses", "completion_bands", "dup_near_response")):
        if not levels[level]:
            continue
        units = np.flatnonzero(sample_alive)
        kind = "exact" if level.startswith("exact") else "bands"
        drop, previous, histogram = _level(_matrix(live[column], units), prior_responses[kind],
                                           [key[units] for key in sample_order])
        if kind == "bands":
            histograms["near_response"] = histogram
        for mask, why in ((drop & ~previous, reason), (previous, PREVIOUS)):
            decisions.sample_drops.setdefault(why, []).extend(live["sample_id"].take(units[mask]).to_pylist())
            counts[why] = counts.get(why, 0) + int(mask.sum())
        sample_alive[units[drop]] = False

    decisions.stats = {
        "rows_in": features.num_rows,
        "rows_live": int(live_rows.size),
        "prompts_live": int(unique_codes.size),
        "dropped_rows": {reason: n for reason, n in counts.items() if n},
        "cluster_sizes": histograms,
    }
    return decisions
