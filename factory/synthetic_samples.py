"""Synthetic teacher outputs in the generation checkpoint format, so the real downstream path
(verify, filters, dedup, decontamination, commit, refresh) runs without a teacher.

Used by the pipeline regression test (``tests/integration/test_data_half_unchanged.py``) and the scale
benchmark (``benchmarks/bench_scale.py``). Deterministic in its arguments. Each prompt is a word
problem with a numeric reference; its samples are R1-style chains (``<think>`` reasoning, then a
``\\boxed{}`` answer) whose mix covers every drop path: wrong answers, chains cut at the token limit,
missing answers, several ``</think>`` tags, repetition loops, language mixing, exact and near-duplicate
chains of one prompt; some prompts repeat other prompts exactly or nearly (under other ids), and some
are verbatim eval-set items (:func:`eval_set`). Lengths are in words (≈ tokens for this vocabulary):
log-normal around ``median_words`` with a long tail capped at ``max_words``.
Not covered: code or multiple-choice tasks; realistic language (the words are drawn from a small list).
"""

from __future__ import annotations

import json
import math
import random
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from factory.think import THINK_CLOSE

WORDS = ("first", "then", "so", "we", "add", "the", "next", "term", "carry", "check", "again", "value", "sum",
         "which", "gives", "step", "note", "that", "both", "sides", "equal", "hence", "total", "remaining")
KINDS = ("correct", "wrong", "truncated", "no_answer", "multi_tag", "repetition", "language_mix", "dup_exact",
         "dup_near")
EVAL_ITEMS = 4
"""Prompts that are verbatim eval-set items (decontamination must catch them)."""


@dataclass(frozen=True)
class SampleMix:
    """Share of each sample kind (normalised); the first sample of a prompt is never a duplicate."""

    correct: float = 0.55
    wrong: float = 0.2
    truncated: float = 0.05
    no_answer: float = 0.03
    multi_tag: float = 0.02
    repetition: float = 0.02
    language_mix: float = 0.02
    dup_exact: float = 0.06
    dup_near: float = 0.05


NAMES = ("Ada", "Bo", "Cy", "Di", "Eve", "Fay", "Gus", "Hal")
EVAL_NAMES = ("Ivy", "Jo", "Kai", "Lu")
"""Eval items use names no other prompt uses: every 13-word window of a question holds the random
count ``b`` or the name, so a prompt shares a 13-gram with an eval item only if it is that item."""


def _question(rng: random.Random, index: int, names: tuple[str, ...] = NAMES) -> tuple[str, str]:
    a, b, c = rng.randint(100, 999), rng.randint(10, 999), rng.randint(2, 9)
    d = rng.randint(1, 99)
    who = names[index % len(names)]
    thing = ("marbles", "stamps", "shells", "coins")[index % 4]
    text = (f"{who} has {a} {thing}, finds {c} boxes with {b} {thing} in each, and gives away {d}. "
            f"How many {thing} does {who} keep?")
    return text, str(a + b * c - d)


def eval_set(n: int = EVAL_ITEMS, seed: int = 0) -> list[dict]:
    """The eval-set items planted among the prompts (``{"question", "answer"}``, GSM8K-shaped)."""
    rng = random.Random(f"eval:{seed}")
    items = []
    for index in range(n):
        text, answer = _question(rng, index, EVAL_NAMES)
        items.append({"question": text, "answer": f"#### {answer}"})
    return items


def prompts(n: int, seed: int = 0, near_share: float = 0.03, exact_share: float = 0.02) -> list[dict]:
    """``n`` prompt records ``{"id", "question", "answer"}``: a 40-word random preamble, then a
    question. A few repeat an earlier prompt exactly or with one preamble word changed (near
    duplicates), and the first :data:`EVAL_ITEMS` (when ``n`` allows) are eval-set items verbatim."""
    rng = random.Random(f"prompts:{seed}")
    rows: list[dict] = []
    planted = eval_set(seed=seed) if n >= 4 * EVAL_ITEMS else []
    for index in range(n):
        if index < len(planted):
            text, answer = planted[index]["question"], planted[index]["answer"].removeprefix("#### ")
        elif len(rows) > len(planted) and rng.random() < exact_share:
            source = rows[rng.randrange(len(planted), len(rows))]
            text, answer = source["question"], source["answer"]
        elif len(rows) > len(planted) and rng.random() < near_share:
            source = rows[rng.randrange(len(planted), len(rows))]
            words = source["question"].split(" ")
            words[3] = "indeed"
            text, answer = " ".join(words), source["answer"]
        else:
            question, answer = _question(rng, index)
            text = " ".join(rng.choice(WORDS) for _ in range(40)).capitalize() + ". " + question
        rows.append({"id": f"syn-{seed}-{index:08d}", "question": text, "answer": answer})
    return rows


def _words(rng: random.Random, count: int) -> str:
    lines, line = [], []
    for _ in range(count):
        line.append(rng.choice(WORDS))
        if len(line) >= 12:
            lines.append(" ".join(line))
            line = []
    if line:
        lines.append(" ".join(line))
    return "\n".join(lines)


def _length(rng: random.Random, median_words: int, max_words: int) -> int:
    return max(8, min(max_words, int(rng.lognormvariate(math.log(median_words), 0.6))))


def _completion(kind: str, reference: str, rng: random.Random, median_words: int, max_words: int,
                siblings: list[str]) -> tuple[str, str]:
    """(completion text, finish_reason) of one sample of ``kind``."""
    if kind == "dup_exact" and siblings:
        return siblings[-1], "stop"
    if kind == "dup_near" and siblings:
        words = siblings[-1].split(" ")
        words[len(words) // 2] = "indeed"
        return " ".join(words), "stop"
    reasoning = _words(rng, _length(rng, median_words, max_words))
    answer = reference if kind != "wrong" else str(int(reference) + rng.randint(1, 9))
    if kind == "truncated":
        return reasoning, "length"
    if kind == "no_answer":  # nothing after the closing tag, or prose without a boxed answer
        return f"{reasoning}\n{THINK_CLOSE}\n\n" + ("The count is what it is." if rng.random() < 0.5 else ""), "stop"
    if kind == "multi_tag":
        return f"{reasoning}\n{THINK_CLOSE}\n\\boxed{{{answer}}}\n{THINK_CLOSE}\n\n\\boxed{{{answer}}}", "stop"
    if kind == "repetition":
        return f"{'carry the one and check again ' * 40}\n{THINK_CLOSE}\n\n\\boxed{{{answer}}}", "stop"
    if kind == "language_mix":
        return f"{reasoning}\n因此我们得到答案然后再检查一遍结果\n{THINK_CLOSE}\n\n\\boxed{{{answer}}}", "stop"
    return f"{reasoning}\n{THINK_CLOSE}\n\nThe total is \\boxed{{{answer}}}.", "stop"


def sample_rows(prompt_rows: list[dict], n: int, seed: int, median_words: int = 120, max_words: int = 1000,
                mix: SampleMix = SampleMix()) -> list[list[dict]]:
    """Per prompt, ``n`` sample dicts ``{"completion", "finish_reason", "completion_tokens"}``."""
    kinds, weights = zip(*[(k, getattr(mix, k)) for k in KINDS])
    out = []
    for prompt in prompt_rows:
        rng = random.Random(f"samples:{seed}:{prompt['id']}")
        samples: list[dict] = []
        for index in range(n):
            kind = rng.choices(kinds, weights)[0] if index else "correct"
            text, finish = _completion(kind, prompt["answer"], rng, median_words, max_words,
                                       [s["completion"] for s in samples])
            samples.append({"completion": text, "finish_reason": finish, "completion_tokens": len(text.split())})
        out.append(samples)
    return out


def write_prompts_jsonl(prompt_rows: list[dict], path: str | Path) -> None:
    """The prompts as a JSONL prompt source (``id_field: id``, ``prompt_field: question``,
    ``reference_field: answer``)."""
    with open(path, "w", encoding="utf-8") as handle:
        for row in prompt_rows:
            handle.write(json.dumps(row) + "\n")


def write_checkpoint(prompt_table: pa.Table, samples: list[list[dict]], generation, checkpoint_dir: str,
                     shard_prompts: int = 1024) -> int:
    """Write generation checkpoint shards, as the generation stage would have, for the ingested
    ``prompt_table`` (PROMPT_SCHEMA rows in the order of ``samples``) under ``generation`` (a
    GenerationConfig); returns the number of sample rows written."""
    from factory import schema
    from factory.stages.generate import gen_key, generation_config_hash
    from factory.stages.generate.checkpoint import CheckpointStore
    from factory.think import split_completion

    config_hash = generation_config_hash(generation)
    store = CheckpointStore(checkpoint_dir, config_hash)
    sampling_json = json.dumps(generation.sampling.model_dump(mode="json"), sort_keys=True)
    written = 0
    prompts_list = prompt_table.to_pylist()
    for start in range(0, len(prompts_list), shard_prompts):
        rows = []
        for prompt, prompt_samples in zip(prompts_list[start:start + shard_prompts],
                                          samples[start:start + shard_prompts], strict=True):
            key = gen_key(config_hash, prompt["prompt"])
            for index, sample in enumerate(prompt_samples):
                reasoning, answer = split_completion(sample["completion"])
                rows.append({
                    **prompt, "sample_index": index, "sample_id": f"{prompt['prompt_id']}:{key[:12]}:{index}",
                    "gen_key": key, "prompt_text": prompt["prompt"], "completion": sample["completion"],
                    "reasoning": reasoning, "answer": answer, "prompt_tokens": len(prompt["prompt"].split()),
                    "completion_tokens": sample["completion_tokens"], "finish_reason": sample["finish_reason"],
                    "cumulative_logprob": None, "gen_status": "ok", "gen_error": None,
                    "teacher_model": generation.engine.model, "teacher_revision": generation.engine.revision,
                    "backend": "synthetic", "backend_version": "1", "sampling_json": sampling_json, "seed": None,
                })
        if rows:
            store.write_shard(pa.Table.from_pylist(rows, schema=schema.SAMPLE_SCHEMA))
            written += len(rows)
    return written
