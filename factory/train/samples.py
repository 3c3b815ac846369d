"""Turning one snapshot row into training tokens, rendered as the STUDENT will see it at inference.

Contract: the training text comes from the row's ``messages`` (the chat form the dataset stores:
system turn if any, user turn, and the assistant turn as the teacher produced it). The prompt is
the context without the final assistant turn, rendered with the student tokenizer's own chat
template (``add_generation_prompt=True``), never the teacher-rendered ``prompt_text``: a student
whose template differs would otherwise train on text it never sees. When the assistant turn starts
with ``<think>\\n`` (thinking was forced at generation) the prompt ends with it -- appended if the
student's template does not put it there itself, as ``factory.prompting.render_prompt`` does at
inference -- and the target is the rest of the turn. The target is followed by the EOS token (the
configured ``eos_token``, else the tokenizer's). Prompt and target are tokenized separately (no
special tokens added); only target tokens carry loss. Nothing is truncated: a sample longer than
``max_seq_len`` is dropped before training, and :func:`overlong_summary` describes the dropped
lengths for the report. Not covered: multi-turn targets (only the final assistant turn is trained on).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from factory.think import THINK_OPEN

INPUT_COLUMNS = ["sample_id", "messages"]
"""Snapshot columns the encoder reads."""
FORCED_OPENING = THINK_OPEN + "\n"
"""The reasoning opening generation forces into the prompt (``PromptingConfig.force_think``)."""
OVERLONG_EDGES = (1.0, 1.25, 1.5, 2.0, 3.0, 4.0)
"""Histogram bin edges of dropped sample lengths, in multiples of max_seq_len (the last bin is open)."""


@dataclass(frozen=True)
class EncodedSample:
    """Token ids of one sample; ``input_ids[:n_prompt]`` carry no loss."""

    input_ids: list[int]
    n_prompt: int

    @property
    def n_target(self) -> int:
        """Tokens that carry loss."""
        return len(self.input_ids) - self.n_prompt


@functools.lru_cache(maxsize=4)
def load_tokenizer(path: str, revision: str | None = None, trust_remote_code: bool = False, eos_token: str | None = None):
    """The tokenizer at ``path`` (with ``eos_token`` as its EOS when given), loaded once per process."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path, revision=revision, trust_remote_code=trust_remote_code)
    if eos_token is not None:
        if tokenizer.convert_tokens_to_ids(eos_token) in (None, tokenizer.unk_token_id):
            raise ValueError(f"train.eos_token {eos_token!r} is not a token of {path}'s vocabulary")
        tokenizer.eos_token = eos_token
    return tokenizer


def render(tokenizer, row: dict) -> tuple[str, str]:
    """``(prompt, target)`` text of ``row`` in the student's chat template (see module contract)."""
    messages = [dict(m) for m in (row.get("messages") or [])]
    if not messages or messages[-1]["role"] != "assistant":
        raise ValueError(f"sample {row.get('sample_id')!r} has no messages ending in an assistant turn to train on")
    *context, reply = messages
    prompt = tokenizer.apply_chat_template(context, tokenize=False, add_generation_prompt=True)
    target = reply["content"] or ""
    if target.startswith(FORCED_OPENING):
        target = target[len(FORCED_OPENING):]
        if not prompt.endswith(FORCED_OPENING):
            prompt += FORCED_OPENING
    return prompt, target


def encode(tokenizer, row: dict) -> EncodedSample:
    """Prompt tokens + target tokens + EOS, whole (the caller drops samples that are too long)."""
    prompt, target = render(tokenizer, row)
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    target_ids = tokenizer(target, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    return EncodedSample(input_ids=prompt_ids + target_ids, n_prompt=len(prompt_ids))


def encode_table(table: pa.Table, tokenizer_path: str, eos_token: str | None = None, lengths_only: bool = False) -> pa.Table:
    """Encode every row of ``table`` (a Ray Data ``map_batches`` body, one row out per row in).

    Returns ``sample_id``, ``n_tokens``, ``n_prompt`` and, unless ``lengths_only``, ``input_ids`` (list<int32>)."""
    tokenizer = load_tokenizer(tokenizer_path, eos_token=eos_token)
    rows = table.select([c for c in INPUT_COLUMNS if c in table.column_names]).to_pylist()
    encoded = [encode(tokenizer, row) for row in rows]
    columns = {
        "sample_id": pa.array([row["sample_id"] for row in rows], pa.string()),
        "n_tokens": pa.array([len(e.input_ids) for e in encoded], pa.int32()),
        "n_prompt": pa.array([e.n_prompt for e in encoded], pa.int32()),
    }
    if not lengths_only:
        columns["input_ids"] = pa.array([e.input_ids for e in encoded], pa.list_(pa.int32()))
    return pa.table(columns)


def overlong_summary(lengths: np.ndarray, max_seq_len: int) -> dict:
    """Count, quantiles and a histogram (bin edges in tokens, counts per bin, last bin open) of the
    token lengths of samples dropped for exceeding ``max_seq_len``."""
    over = np.sort(np.asarray(lengths, dtype=np.int64)[np.asarray(lengths) > max_seq_len])
    edges = [int(max_seq_len * e) for e in OVERLONG_EDGES]
    bins = np.searchsorted(edges, over, side="left") - 1  # bin i holds (edges[i], edges[i + 1]]
    counts = np.bincount(bins, minlength=len(edges))
    summary = {"count": int(len(over)), "edges": edges, "counts": [int(c) for c in counts]}
    if len(over):
        summary.update(min=int(over[0]), max=int(over[-1]), p50=int(np.percentile(over, 50, method="lower")),
                       p90=int(np.percentile(over, 90, method="lower")))
    return summary
