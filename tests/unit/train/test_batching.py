"""SFT batches: which tokens carry loss, and packing without cross-sample attention."""

import pytest

from factory import synthetic, tiny
from factory.train.batching import IGNORE_INDEX, collate, summed_token_loss, target_tokens
from factory.train.samples import encode, prompt_of


@pytest.fixture(scope="module")
def tokenizer():
    return tiny.build_tokenizer()


@pytest.fixture(scope="module")
def student(tokenizer):
    model = tiny.new_model(tiny.SPEC.student, tokenizer, seed=0)
    return model.eval()


def _row(tokenizer, i: int) -> dict:
    problem = synthetic.make_problems(8, seed=5)[i]
    user = synthetic.user_message(problem["prompt"])
    return {"sample_id": f"s{i}", "prompt_text": tiny.chat_prompt(tokenizer, user),
            "completion": synthetic.completion_for(problem["prompt"]), "prompt": user}


def test_only_completion_and_eos_carry_loss(tokenizer):
    row = {"sample_id": "a", "prompt_text": tiny.chat_prompt(tokenizer, "1+1?"), "completion": "2\n</think>\n\n\\boxed{2}"}
    sample = encode(tokenizer, row, max_seq_len=512)
    batch = collate([[(sample.input_ids, sample.n_prompt)]], pad_id=tokenizer.pad_token_id)
    labelled = [int(t) for t in batch["labels"][0] if t != IGNORE_INDEX]
    assert tokenizer.decode(labelled, skip_special_tokens=False) == row["completion"] + tokenizer.eos_token
    prompt_part = tokenizer.decode(batch["input_ids"][0][: sample.n_prompt], skip_special_tokens=False)
    assert prompt_part.endswith("<｜Assistant｜><think>\n") and prompt_part.startswith(tokenizer.bos_token)


def test_missing_prompt_text_is_rerendered_with_generation_prompt(tokenizer):
    row = _row(tokenizer, 0)
    assert prompt_of(tokenizer, {**row, "prompt_text": None}) == row["prompt_text"]


def test_truncation_keeps_prompt_and_flags_sample(tokenizer):
    row = _row(tokenizer, 1)
    full = encode(tokenizer, row, max_seq_len=10_000)
    cut = encode(tokenizer, row, max_seq_len=full.n_prompt + 3)
    assert cut.truncated and not full.truncated
    assert cut.input_ids == full.input_ids[: full.n_prompt + 3] and cut.n_target == 3


def test_packed_positions_restart_and_padding_carries_no_loss(tokenizer):
    batch = collate([[([5, 6, 7], 1), ([8, 9], 1)], [([5, 6], 1)]], pad_id=0)
    assert batch["position_ids"].tolist() == [[0, 1, 2, 0, 1], [0, 1, 0, 1, 2]]
    assert batch["labels"].tolist() == [[-100, 6, 7, -100, 9], [-100, 6, -100, -100, -100]]
    assert target_tokens(batch) == 4


def test_packed_sample_does_not_attend_to_previous_sample(tokenizer, student):
    import torch

    a, b, other_a = (encode(tokenizer, _row(tokenizer, i), 512) for i in (2, 3, 4))
    logits = []
    for first in (a, other_a):
        batch = collate([[(first.input_ids, first.n_prompt), (b.input_ids, b.n_prompt)]], tokenizer.pad_token_id)
        with torch.no_grad():
            out = student(input_ids=batch["input_ids"], position_ids=batch["position_ids"], use_cache=False).logits
        logits.append(out[0, len(first.input_ids):len(first.input_ids) + len(b.input_ids)])
    torch.testing.assert_close(logits[0], logits[1], rtol=1e-5, atol=1e-5)


def test_packed_loss_equals_unpacked_loss(tokenizer, student):
    """Same samples, packed into one sequence vs one per row: summed token loss equal within 1e-4 relative."""
    import torch

    samples = [encode(tokenizer, _row(tokenizer, i), 512) for i in range(4)]
    pairs = [(s.input_ids, s.n_prompt) for s in samples]
    packed, unpacked = collate([pairs], tokenizer.pad_token_id), collate([[p] for p in pairs], tokenizer.pad_token_id)
    assert target_tokens(packed) == target_tokens(unpacked) == sum(s.n_target for s in samples)
    with torch.no_grad():
        torch.testing.assert_close(summed_token_loss(student, packed), summed_token_loss(student, unpacked), rtol=1e-4, atol=1e-4)
