"""Descriptions of the committed dataset's columns and the Markdown table built from them (used by
the dataset card and by ``docs/dataset-schema.md``). Every column of
``factory.schema.DATASET_SCHEMA`` must have a description here (a unit test checks it)."""

from __future__ import annotations

import pyarrow as pa

COLUMN_DOCS = {
    "prompt_id": "Stable prompt id: given by the source file, else a hash of the prompt content.",
    "task": 'Task family: "math", "code" or "logic"; selects the verifier.',
    "prompt": "Problem text shown to the teacher (before the chat template).",
    "reference": "Reference final answer for math/logic prompts; null when the source has none.",
    "tests": "Code tasks: test source run against the candidate program.",
    "entry_point": "Code tasks: name of the function the tests call.",
    "source": "Name of the prompt source (config `prompts.sources[].name`) the prompt came from.",
    "source_row": "1-based row number of the prompt in its source file.",
    "sample_index": "Index of this sample among the teacher's n samples for the prompt (0..n-1).",
    "sample_id": "Unique row id: `{prompt_id}:{gen_key[:12]}:{sample_index}`.",
    "gen_key": "Hash of prompt × teacher revision × sampling params × template; the generation cache key.",
    "prompt_text": "Exact rendered prompt the engine saw (chat template applied).",
    "completion": 'Full generated text, starting after the forced "<think>\\n".',
    "reasoning": "Reasoning trace: the text inside <think>…</think>.",
    "answer": "Final answer: the text after </think>.",
    "prompt_tokens": "Prompt length in teacher tokens.",
    "completion_tokens": "Completion length in teacher tokens.",
    "finish_reason": '"stop" or "length" (kept rows are normally "stop").',
    "cumulative_logprob": "Teacher's cumulative log-probability of the completion, when the backend reports it.",
    "gen_status": '"ok" for kept rows; "prompt_too_long" / "engine_error" rows are dropped before commit.',
    "gen_error": "Engine error message (null for kept rows).",
    "teacher_model": "Teacher model name or path.",
    "teacher_revision": "Teacher revision (commit hash or weights fingerprint): lineage of the sample.",
    "backend": 'Generation backend: "vllm", "openai" or "transformers".',
    "backend_version": "Version of the generation backend.",
    "sampling_json": "Sampling parameters (temperature, top_p, max_tokens, n, …) as canonical JSON.",
    "seed": "Sampling seed of this row.",
    "sample_round": "Generation round that drew the sample: 0 with a fixed n; 0, 1, … under adaptive sampling.",
    "pass_rate_estimate": "Adaptive sampling: the prompt's unbiased pass-rate estimate ((k-1)/(N-1) at the k-th "
                          "correct sample, else correct/N); null with a fixed n.",
    "verdict": "Verifier verdict: correct | wrong | no_answer | timeout | error.",
    "verifier": "Verifier that judged the answer, as `name@version`.",
    "verdict_detail": "Verifier detail (parsed answer, failing test, …).",
    "format_ok": "Whether the completion had the expected <think>…</think> answer format.",
    "reward": "Reward-model score; null when reward scoring is off.",
    "reward_error": "Reward-model failure message (such rows are not scored 0, they carry this).",
    "pass_rate": "Share of the prompt's ok samples judged correct (difficulty signal).",
    "messages": "Chat form used for SFT: list of {role, content} (user prompt, assistant reasoning + answer).",
}


def _type_name(data_type: pa.DataType) -> str:
    return str(data_type).replace("<item: ", "<").replace("element: ", "")


def schema_table(schema: pa.Schema, docs: dict[str, str] = COLUMN_DOCS) -> str:
    """Markdown table: one line per column with type, nullability and description."""
    lines = ["| column | type | nullable | description |", "|---|---|---|---|"]
    for field in schema:
        description = docs.get(field.name, "").replace("|", "\\|")
        nullable = "yes" if field.nullable else "no"
        lines.append(f"| `{field.name}` | `{_type_name(field.type)}` | {nullable} | {description} |")
    return "\n".join(lines) + "\n"
