"""Turning one snapshot row into training tokens, as the teacher saw them.

Contract: the prompt is ``prompt_text`` (the exact rendered prompt the teacher was given, ending with
the generation prompt); when it is null the prompt is re-rendered with the tokenizer's chat template
(``add_generation_prompt=True``) from ``messages`` (without a trailing assistant turn) or ``prompt``.
The target is ``completion`` followed by the EOS token. Prompt and completion are tokenized separately
(no special tokens added), so the completion tokens are those the teacher generated after its prompt.
Only target tokens carry loss. Sequences longer than ``max_seq_len`` keep their start and lose the end
of the completion; such samples are flagged as truncated. Not covered: multi-turn targets (only the
final assistant turn is trained on).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import pyarrow as pa

INPUT_COLUMNS = ["sample_id", "prompt_text", "completion", "prompt", "messages"]
"""Snapshot columns the encoder reads."""


@dataclass(frozen=True)
class EncodedSample:
    """Token ids of one sample; ``input_ids[:n_prompt]`` carry no loss."""

    input_ids: list[int]
    n_prompt: int
    truncated: bool

    @property
    def n_target(self) -> int:
        """Tokens that carry loss."""
        return len(self.input_ids) - self.n_prompt


@functools.lru_cache(maxsize=4)
def load_tokenizer(path: str, revision: str | None = None, trust_remote_code: bool = False):
    """The tokenizer at ``path``, loaded once per process."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(path, revision=revision, trust_remote_code=trust_remote_code)


def prompt_of(tokenizer, row: dict) -> str:
    """The rendered prompt text for ``row`` (see module contract)."""
    if row.get("prompt_text"):
        return row["prompt_text"]
    messages = [dict(m) for m in (row.get("messages") or [])]
    if messages and messages[-1]["role"] == "assistant":
        messages = messages[:-1]
    if not messages:
        if not row.get("prompt"):
            raise ValueError(f"sample {row.get('sample_id')!r} has no prompt_text, messages or prompt")
        messages = [{"role": "user", "content": row["prompt"]}]
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def encode(tokenizer, row: dict, max_seq_len: int) -> EncodedSample:
    """Prompt tokens + completion tokens + EOS, truncated to ``max_seq_len`` from the right."""
    if row.get("completion") is None:
        raise ValueError(f"sample {row.get('sample_id')!r} has no completion")
    prompt_ids = tokenizer(prompt_of(tokenizer, row), add_special_tokens=False)["input_ids"]
    target_ids = tokenizer(row["completion"], add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    ids = prompt_ids + target_ids
    truncated = len(ids) > max_seq_len
    ids = ids[:max_seq_len]
    return EncodedSample(input_ids=ids, n_prompt=min(len(prompt_ids), len(ids)), truncated=truncated)


def encode_table(table: pa.Table, tokenizer_path: str, max_seq_len: int, lengths_only: bool = False) -> pa.Table:
    """Encode every row of ``table`` (a Ray Data ``map_batches`` body, one row out per row in).

    Returns ``sample_id``, ``n_tokens``, ``n_prompt``, ``truncated`` and, unless ``lengths_only``,
    ``input_ids`` (list<int32>)."""
    tokenizer = load_tokenizer(tokenizer_path)
    rows = table.select([c for c in INPUT_COLUMNS if c in table.column_names]).to_pylist()
    encoded = [encode(tokenizer, row, max_seq_len) for row in rows]
    columns = {
        "sample_id": pa.array([row["sample_id"] for row in rows], pa.string()),
        "n_tokens": pa.array([len(e.input_ids) for e in encoded], pa.int32()),
        "n_prompt": pa.array([e.n_prompt for e in encoded], pa.int32()),
        "truncated": pa.array([e.truncated for e in encoded], pa.bool_()),
    }
    if not lengths_only:
        columns["input_ids"] = pa.array([e.input_ids for e in encoded], pa.list_(pa.int32()))
    return pa.table(columns)
