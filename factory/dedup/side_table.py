"""The signature side table: what a committed snapshot leaves behind for cross-snapshot dedup.

One Parquet row per kept prompt (``kind="prompt"``, ``id`` = prompt_id, ``scope`` null) and per
kept sample (``kind="response"``, ``id`` = sample_id, ``scope`` = its prompt_id), holding the
exact-dedup hash of the normalised text and the full MinHash signature (so a later run may
choose other bands/rows). The signature parameters (num_perm, seed, shingle, ngram, scheme) are
stored in the file's schema metadata (:func:`with_params`); :func:`checked` refuses a table whose
parameters differ from the current run's, naming the parameter, since such signatures cannot be compared.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from factory.dedup.hashing import exact_hashes
from factory.dedup.minhash import SCHEME, MinHasher

_META_KEY = b"factory.dedup.signatures"


@dataclass(frozen=True)
class SignatureParams:
    """Everything a stored signature depends on."""

    num_perm: int
    seed: int
    shingle: str
    ngram: int
    scheme: str = SCHEME


def text_signatures(texts: Sequence[str], params: SignatureParams) -> np.ndarray:
    """(N, num_perm) uint32 MinHash signatures of the texts."""
    return MinHasher(params.num_perm, params.seed).text_signatures(texts, params.shingle, params.ngram)


def side_schema(num_perm: int) -> pa.Schema:
    """Arrow schema of the side table for signatures of ``num_perm`` values."""
    return pa.schema(
        [
            pa.field("id", pa.string(), nullable=False),
            pa.field("kind", pa.string(), nullable=False),  # "prompt" | "response"
            pa.field("scope", pa.string()),  # prompt_id of a response; null for prompts
            pa.field("exact_hash", pa.uint64(), nullable=False),
            pa.field("signature", pa.list_(pa.uint32(), num_perm), nullable=False),
        ]
    )


def _kind_rows(kind: str, ids, scope, texts: list[str], params: SignatureParams) -> pa.Table:
    sig = text_signatures(texts, params)
    return pa.table(
        {
            "id": ids,
            "kind": pa.array([kind] * len(texts), pa.string()),
            "scope": scope,
            "exact_hash": pa.array(exact_hashes(texts), pa.uint64()),
            "signature": pa.FixedSizeListArray.from_arrays(pa.array(sig.ravel(), pa.uint32()), params.num_perm),
        },
        schema=side_schema(params.num_perm),
    )


def side_rows(batch: pa.Table, params: SignatureParams) -> pa.Table:
    """Side-table rows for the kept rows of a batch (drop_reason null, or no drop_reason column):
    one per distinct prompt_id in the batch and one per sample with a completion."""
    if "drop_reason" in batch.column_names:
        batch = batch.filter(pc.is_null(batch["drop_reason"]))
    prompt_ids = batch["prompt_id"].to_pylist()
    first = sorted({pid: i for i, pid in reversed(list(enumerate(prompt_ids)))}.values())
    prompts = batch.take(first)
    parts = [
        _kind_rows(
            "prompt", prompts["prompt_id"], pa.nulls(len(first), pa.string()), prompts["prompt"].to_pylist(), params
        )
    ]
    if "completion" in batch.column_names and "sample_id" in batch.column_names:
        samples = batch.filter(pc.is_valid(batch["completion"]))
        parts.append(
            _kind_rows(
                "response", samples["sample_id"], samples["prompt_id"], samples["completion"].to_pylist(), params
            )
        )
    return pa.concat_tables(parts)


def with_params(table: pa.Table, params: SignatureParams) -> pa.Table:
    """``table`` (side-table rows) cast to the side schema carrying ``params`` in its metadata: write
    it with any Parquet writer (the snapshot store's ``write_table(..., side="signatures")``)."""
    schema = side_schema(params.num_perm).with_metadata({_META_KEY: json.dumps(asdict(params)).encode()})
    return table.cast(schema)


def checked(table: pa.Table, params: SignatureParams, origin: str) -> pa.Table:
    """A side table read back (e.g. ``pyarrow.parquet.read_table``), its stored parameters checked
    against ``params``; ValueError naming the parameter and ``origin`` when they differ."""
    stored = json.loads((table.schema.metadata or {}).get(_META_KEY, b"{}"))
    for name, value in asdict(params).items():
        if stored.get(name) != value:
            raise ValueError(f"signature side table {origin}: {name}={stored.get(name)!r} but this run uses {name}={value!r}")
    return table.cast(side_schema(params.num_perm))
