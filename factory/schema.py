"""Arrow schemas of the rows that flow between stages and of the committed dataset.

One row per prompt after ingestion; one row per (prompt_id, sample_index) from generation on.
Stages add columns, never rename them. A filter never removes rows itself: it sets
``drop_reason`` (and ``drop_stage``) on rows it rejects; the first reason set wins, later stages
pass dropped rows through untouched, and the commit step splits kept rows from dropped ones, so
every drop is counted with its reason (and dropped rows can be kept in a side table).
"""

from __future__ import annotations

import pyarrow as pa

PROMPT_FIELDS = [
    pa.field("prompt_id", pa.string(), nullable=False),  # stable: given by the file or content hash
    pa.field("task", pa.string(), nullable=False),  # "math" | "code" | "logic"
    pa.field("prompt", pa.string(), nullable=False),  # the problem text shown to the teacher
    pa.field("reference", pa.string()),  # reference final answer (math/logic), may be null
    pa.field("tests", pa.string()),  # code tasks: test source run against the candidate
    pa.field("entry_point", pa.string()),  # code tasks: function the tests call
    pa.field("source", pa.string(), nullable=False),  # name of the prompt source it came from
    pa.field("source_row", pa.int64(), nullable=False),  # 1-based row number in that source
]
PROMPT_SCHEMA = pa.schema(PROMPT_FIELDS)

GENERATION_FIELDS = [
    pa.field("sample_index", pa.int32(), nullable=False),  # 0..n-1 within the prompt
    pa.field("sample_id", pa.string(), nullable=False),  # f"{prompt_id}:{gen_key[:12]}:{sample_index}"
    pa.field("gen_key", pa.string(), nullable=False),  # hash(prompt × teacher rev × sampling × template)
    pa.field("prompt_text", pa.string()),  # the exact rendered prompt the engine saw
    pa.field("completion", pa.string()),  # full generated text (starting after the forced "<think>\n")
    pa.field("reasoning", pa.string()),  # text inside <think>…</think>
    pa.field("answer", pa.string()),  # text after </think>
    pa.field("prompt_tokens", pa.int32()),
    pa.field("completion_tokens", pa.int32()),
    pa.field("finish_reason", pa.string()),  # "stop" | "length" | null on error
    pa.field("cumulative_logprob", pa.float64()),
    pa.field("gen_status", pa.string(), nullable=False),  # "ok" | "prompt_too_long" | "engine_error"
    pa.field("gen_error", pa.string()),
    pa.field("teacher_model", pa.string()),
    pa.field("teacher_revision", pa.string()),
    pa.field("backend", pa.string()),  # "vllm" | "openai" | "transformers"
    pa.field("backend_version", pa.string()),
    pa.field("sampling_json", pa.string()),  # sampling params as canonical JSON
    pa.field("seed", pa.int64()),
    pa.field("sample_round", pa.int32()),  # generation round that drew the sample (0 with a fixed n)
    pa.field("pass_rate_estimate", pa.float64()),  # adaptive mode: unbiased per-prompt pass rate; else null
]

SCORING_FIELDS = [
    pa.field("verdict", pa.string()),  # correct | wrong | no_answer | timeout | error
    pa.field("verifier", pa.string()),  # verifier name@version
    pa.field("verdict_detail", pa.string()),
    pa.field("format_ok", pa.bool_()),
    pa.field("reward", pa.float64()),  # reward-model score; null if not scored or failed
    pa.field("reward_error", pa.string()),
    pa.field("pass_rate", pa.float64()),  # share of the prompt's ok samples judged correct
]

FILTER_FIELDS = [
    pa.field("drop_reason", pa.string()),  # null = kept
    pa.field("drop_stage", pa.string()),
]

MESSAGE_TYPE = pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))
DATASET_FIELDS = [pa.field("messages", MESSAGE_TYPE)]  # chat form used for SFT

SAMPLE_SCHEMA = pa.schema(PROMPT_FIELDS + GENERATION_FIELDS)
SCORED_SCHEMA = pa.schema(PROMPT_FIELDS + GENERATION_FIELDS + SCORING_FIELDS + FILTER_FIELDS)
DATASET_SCHEMA = pa.schema(PROMPT_FIELDS + GENERATION_FIELDS + SCORING_FIELDS + DATASET_FIELDS)


def conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """Return ``table`` with exactly ``schema``'s columns, in order; missing nullable columns are
    added as nulls. Raises ValueError naming a missing non-nullable column."""
    columns = []
    for field in schema:
        if field.name in table.column_names:
            columns.append(table.column(field.name).cast(field.type))
        elif field.nullable:
            columns.append(pa.nulls(table.num_rows, field.type))
        else:
            raise ValueError(f"column {field.name!r} is required but missing")
    return pa.Table.from_arrays(columns, schema=schema)
