"""SFT samples and batches: what is trained on, which tokens carry loss, one padding-free row per
micro-batch, and packing without cross-sample attention under every attention kernel available."""

import copy

import numpy as np
import pytest

from factory import synthetic, tiny
from factory.train.batching import IGNORE_INDEX, collate, one_row_for, shard_for_sequence_parallel, target_tokens
from factory.train.samples import encode, overlong_summary, render

CHATML = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
          "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
"""A student template unlike the tiny teacher's R1 one (ChatML, no forced <think>)."""


@pytest.fixture(scope="module")
def tokenizer():
    return tiny.build_tokenizer()


def _row(i: int, completion: str | None = None) -> dict:
    problem = synthetic.make_problems(8, seed=5)[i]
    user = synthetic.user_message(problem["prompt"])
    completion = completion if completion is not None else synthetic.completion_for(problem["prompt"])
    return {"sample_id": f"s{i}", "prompt_text": "TEACHER-RENDERED (must not be used)",
            "messages": [{"role": "user", "content": user}, {"role": "assistant", "content": "<think>\n" + completion}]}


def test_only_completion_and_eos_carry_loss(tokenizer):
    row = _row(0, completion="2\n</think>\n\n\\boxed{2}")
    sample = encode(tokenizer, row)
    batch = collate([[(sample.input_ids, sample.n_prompt)]], tokenizer.pad_token_id, one_row=False)
    labelled = [int(t) for t in batch["targets"][0] if t != IGNORE_INDEX]
    assert tokenizer.decode(labelled, skip_special_tokens=False) == "2\n</think>\n\n\\boxed{2}" + tokenizer.eos_token
    prompt_part = tokenizer.decode(batch["input_ids"][0][: sample.n_prompt], skip_special_tokens=False)
    assert prompt_part.startswith(tokenizer.bos_token) and prompt_part.endswith("<｜Assistant｜><think>\n")


def test_prompt_is_rendered_from_messages_with_the_students_template(tokenizer):
    student = copy.deepcopy(tokenizer)
    student.chat_template = CHATML
    prompt, target = render(student, _row(1))
    user = _row(1)["messages"][0]["content"]
    assert prompt == f"<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n<think>\n"  # forced opening appended
    assert not target.startswith("<think>") and "TEACHER" not in prompt


def test_row_without_messages_is_refused(tokenizer):
    with pytest.raises(ValueError, match="messages"):
        encode(tokenizer, {"sample_id": "x", "prompt_text": "p", "completion": "c", "messages": None})


def test_long_sample_is_encoded_whole_not_cut(tokenizer):
    long_row = _row(2, completion="7" * 3000)
    assert len(encode(tokenizer, long_row).input_ids) > 3000


def test_overlong_summary_counts_and_bins_dropped_lengths():
    summary = overlong_summary(np.array([10, 100, 101, 125, 126, 150, 500, 900]), max_seq_len=100)
    assert summary["count"] == 6 and summary["edges"] == [100, 125, 150, 200, 300, 400]
    assert summary["counts"] == [2, 2, 0, 0, 0, 2]  # (100,125], (125,150], ..., > 400
    assert (summary["min"], summary["max"]) == (101, 900)


def test_flash_attention_layout_is_one_padding_free_row_with_restarted_positions():
    batch = collate([[([5, 6, 7], 1), ([8, 9], 1)], [([5, 6], 1)]], pad_id=0, one_row=one_row_for("flash_attention_2"))
    assert batch["input_ids"].tolist() == [[5, 6, 7, 8, 9, 5, 6]]
    assert batch["position_ids"].tolist() == [[0, 1, 2, 0, 1, 0, 1]]
    assert batch["targets"].tolist() == [[6, 7, -100, 9, -100, 6, -100]]  # never the next sample's first token
    assert target_tokens(batch) == 4


def test_sdpa_layout_is_one_padded_row_per_sequence_and_padding_carries_no_loss():
    batch = collate([[([5, 6, 7], 1), ([8, 9], 1)], [([5, 6], 1)]], pad_id=0, one_row=one_row_for("sdpa"))
    assert batch["position_ids"].tolist() == [[0, 1, 2, 0, 1], [0, 1, 0, 1, 2]]
    assert batch["targets"].tolist() == [[6, 7, -100, 9, -100], [6, -100, -100, -100, -100]]
    assert target_tokens(batch) == 4


def test_sequence_parallel_shards_split_the_padded_row_without_losing_targets():
    batch = collate([[([5, 6, 7], 1), ([8, 9], 1)]], pad_id=0, one_row=True)
    shards = [shard_for_sequence_parallel(batch, r, 3, pad_id=0) for r in range(3)]
    assert [s["input_ids"].shape[1] for s in shards] == [2, 2, 2]
    assert sum(target_tokens(s) for s in shards) == target_tokens(batch)
    assert [int(t) for s in shards for t in s["position_ids"][0]] == [0, 1, 2, 0, 1, 2]


def _available_attention() -> list[str]:
    import importlib.util

    return ["eager", "sdpa"] + (["flash_attention_2"] if importlib.util.find_spec("flash_attn") else [])


@pytest.mark.parametrize("one_row", [False, True])
@pytest.mark.parametrize("attn", _available_attention())
def test_perturbing_one_packed_sample_leaves_the_next_samples_loss_unchanged(tokenizer, attn, one_row, tmp_path):
    """Sample B's loss is the same after A (packed before it) is replaced by other tokens of another
    length, in both layouts; flex_attention is absent here (no CPU backward in torch 2.13)."""
    import torch

    from factory.train.loss import TokenLossModel
    from factory.train.model import load_student

    model_dir = tmp_path / "student"
    tiny.new_model(tiny.SPEC.student, tokenizer, seed=0).save_pretrained(model_dir)
    lm, _ = load_student(str(model_dir), dtype="fp32", attn_implementation=attn, gradient_checkpointing=False)
    model = TokenLossModel(lm.eval(), chunk_tokens=None)
    a, other_a, b, c = (encode(tokenizer, _row(i)) for i in (2, 4, 3, 5))
    assert len(a.input_ids) != len(other_a.input_ids)
    losses = []
    for first in (a, other_a):
        sequences = [[(first.input_ids, first.n_prompt), (b.input_ids, b.n_prompt)], [(c.input_ids, c.n_prompt)]]
        batch = collate(sequences, tokenizer.pad_token_id, one_row)
        batch["targets"][0, :len(first.input_ids)] = IGNORE_INDEX  # B's loss (and C's) only
        with torch.no_grad():
            losses.append(model(**batch))
    assert lm.config._attn_implementation == attn
    torch.testing.assert_close(losses[0], losses[1], rtol=1e-6, atol=1e-6)


def test_packed_loss_equals_sum_of_single_sample_losses(tokenizer):
    import torch

    from factory.train.loss import TokenLossModel

    model = TokenLossModel(tiny.new_model(tiny.SPEC.student, tokenizer, seed=0).eval(), chunk_tokens=None)
    samples = [encode(tokenizer, _row(i)) for i in range(4)]
    pairs = [(s.input_ids, s.n_prompt) for s in samples]
    packed = collate([pairs[:3], pairs[3:]], tokenizer.pad_token_id, one_row=False)
    assert target_tokens(packed) == sum(s.n_target for s in samples)
    with torch.no_grad():
        alone = sum(model(**collate([[p]], tokenizer.pad_token_id, one_row=False)) for p in pairs)
        torch.testing.assert_close(model(**packed), alone, rtol=1e-5, atol=1e-5)
