"""Student loading: dtype, attention kernel, and clear errors for kernels that are not installed."""

import importlib.util

import pytest

from factory import tiny
from factory.train.model import check_kernels, load_student


@pytest.mark.skipif(importlib.util.find_spec("flash_attn") is not None, reason="flash-attn is installed here")
def test_flash_attention_asked_for_and_absent_names_the_field():
    with pytest.raises(ValueError, match=r"train\.attn_implementation: flash_attention_2 needs the flash-attn package"):
        check_kernels("flash_attention_2", liger_kernels=False)


@pytest.mark.skipif(importlib.util.find_spec("liger_kernel") is not None, reason="liger-kernel is installed here")
def test_liger_asked_for_and_absent_names_the_field():
    with pytest.raises(ValueError, match=r"train\.liger_kernels: true needs the liger-kernel package"):
        check_kernels("sdpa", liger_kernels=True)


def test_bf16_training_loads_bf16_weights_with_the_chosen_attention(tmp_path):
    import torch

    tokenizer = tiny.build_tokenizer()
    tiny.new_model(tiny.SPEC.student, tokenizer, seed=0).save_pretrained(tmp_path)
    lm, context = load_student(str(tmp_path), dtype="bf16", attn_implementation="eager", gradient_checkpointing=True)
    assert context is None and {p.dtype for p in lm.parameters()} == {torch.bfloat16}
    assert lm.config._attn_implementation == "eager" and lm.is_gradient_checkpointing and not lm.config.use_cache
