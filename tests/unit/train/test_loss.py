"""The training loss module: chunked cross-entropy equals the unchunked one in value and gradients,
activation checkpointing leaves both unchanged, and chunking bounds the logits held at once."""

import pytest
import torch

from factory import synthetic, tiny
from factory.train.batching import collate
from factory.train.loss import TokenLossModel, lm_state_dict, summed_cross_entropy
from factory.train.model import prepare_student
from factory.train.samples import encode


@pytest.fixture(scope="module")
def tokenizer():
    return tiny.build_tokenizer()


@pytest.fixture(scope="module")
def batch(tokenizer):
    rows = []
    for i, problem in enumerate(synthetic.make_problems(6, seed=9)):
        user = synthetic.user_message(problem["prompt"])
        rows.append({"sample_id": f"s{i}", "messages": [{"role": "user", "content": user}, {
            "role": "assistant", "content": "<think>\n" + synthetic.completion_for(problem["prompt"])}]})
    samples = [encode(tokenizer, row) for row in rows]
    return collate([[(s.input_ids, s.n_prompt) for s in samples[:3]], [(s.input_ids, s.n_prompt) for s in samples[3:]]],
                   tokenizer.pad_token_id, one_row=False)


GRAD_RTOL = 1e-5
"""Relative (Frobenius) gradient error allowed: only float summation order differs (seen: ~5e-7)."""


def _assert_grads_close(grads: dict, reference: dict) -> None:
    for name, grad in reference.items():
        error = float((grads[name] - grad).norm() / grad.norm().clamp_min(1e-12))
        assert error < GRAD_RTOL, f"{name}: relative gradient error {error:.2e}"


def _loss_and_grads(tokenizer, batch, chunk_tokens, checkpointing=False):
    lm = prepare_student(tiny.new_model(tiny.SPEC.student, tokenizer, seed=0), gradient_checkpointing=checkpointing,
                         liger_kernels=False)
    model = TokenLossModel(lm, chunk_tokens).train()
    loss = model(**batch)
    loss.backward()
    return loss.detach(), {name: p.grad.clone() for name, p in model.named_parameters()}


@pytest.mark.parametrize("chunk_tokens", [16, 100_000])
def test_chunked_loss_and_gradients_equal_unchunked(tokenizer, batch, chunk_tokens):
    loss, grads = _loss_and_grads(tokenizer, batch, chunk_tokens)
    ref_loss, ref_grads = _loss_and_grads(tokenizer, batch, None)
    torch.testing.assert_close(loss, ref_loss, rtol=1e-6, atol=0.0)
    _assert_grads_close(grads, ref_grads)


def test_activation_checkpointing_keeps_loss_and_gradients(tokenizer, batch):
    loss, grads = _loss_and_grads(tokenizer, batch, 64, checkpointing=True)
    ref_loss, ref_grads = _loss_and_grads(tokenizer, batch, 64, checkpointing=False)
    torch.testing.assert_close(loss, ref_loss, rtol=1e-6, atol=0.0)
    _assert_grads_close(grads, ref_grads)


def test_chunked_loss_never_holds_more_than_one_chunk_of_logits():
    """Every tensor autograd keeps for backward is at most one chunk's worth of logits."""
    hidden = torch.randn(1, 512, 16, requires_grad=True)
    head = torch.nn.Linear(16, 1000, bias=False)
    targets = torch.randint(0, 1000, (1, 512))
    saved: list[int] = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t.numel()) or t, lambda t: t):
        summed_cross_entropy(hidden, targets, head, chunk_tokens=64)
    assert max(saved) < 64 * 1000 <= 512 * 1000 / 8
    saved.clear()
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t.numel()) or t, lambda t: t):
        summed_cross_entropy(hidden, targets, head, chunk_tokens=None)
    assert max(saved) >= 512 * 1000  # the unchunked baseline keeps the whole row's logits


def test_micro_batch_without_targets_still_reaches_every_weight(tokenizer, batch):
    model = TokenLossModel(tiny.new_model(tiny.SPEC.student, tokenizer, seed=0), chunk_tokens=16)
    empty = dict(batch, targets=torch.full_like(batch["targets"], -100))
    loss = model(**empty)
    loss.backward()
    assert float(loss) == 0.0 and all(p.grad is not None for p in model.parameters())


def test_saved_state_dict_is_keyed_like_the_wrapped_model(tokenizer):
    lm = tiny.new_model(tiny.SPEC.student, tokenizer, seed=0)
    assert set(lm_state_dict(TokenLossModel(lm, 8).state_dict())) == set(lm.state_dict())
