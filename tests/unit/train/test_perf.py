"""Throughput figures: training FLOPs from the model, MFU against a device peak, peak memory."""

import pytest

from factory import tiny
from factory.train.perf import attention_width, matmul_params, mfu, peak_flops, peak_memory_bytes, training_flops


@pytest.fixture(scope="module")
def student():
    return tiny.new_model(tiny.SPEC.student, tiny.build_tokenizer(), seed=0)


def test_matmul_params_count_the_tied_head_once_and_skip_the_lookup(student):
    from transformers import Qwen2Config, Qwen2ForCausalLM

    assert student.config.tie_word_embeddings
    assert matmul_params(student) == sum(p.numel() for p in student.parameters())  # the shared matrix, once
    untied = Qwen2ForCausalLM(Qwen2Config(vocab_size=300, hidden_size=64, intermediate_size=128, num_hidden_layers=1,
                                          num_attention_heads=1, num_key_value_heads=1, tie_word_embeddings=False))
    assert matmul_params(untied) == sum(p.numel() for p in untied.parameters()) - 300 * 64  # lookup: no FLOPs


def test_training_flops_are_6n_per_token_plus_causal_attention(student):
    layers, width = attention_width(student.config)
    assert (layers, width) == (2, 128)
    assert training_flops([10], 1000, layers, width) == 6 * 1000 * 10 + 6 * 2 * 128 * 100
    assert training_flops([5, 5], 1000, layers, width) < training_flops([10], 1000, layers, width)  # packing: no cross terms


@pytest.mark.parametrize(("name", "expected"), [("NVIDIA H200", 989e12), ("NVIDIA H100 80GB HBM3", 989e12),
                                                ("NVIDIA H100 PCIe", 756e12), ("NVIDIA A100-SXM4-80GB", 312e12),
                                                (None, None), ("Some Unknown GPU", None)])
def test_peak_flops_come_from_the_device_table(name, expected):
    assert peak_flops(name, None) == expected


def test_configured_peak_wins_and_mfu_needs_a_peak():
    assert peak_flops("NVIDIA H200", 1e12) == 1e12
    assert mfu(5e11, 1.0, 1, 1e12) == 0.5
    assert mfu(5e11, 1.0, 1, None) is None


def test_cpu_peak_memory_is_the_process_peak_rss():
    import torch

    held = torch.ones(64 * 2**20 // 4)  # 64 MiB
    assert peak_memory_bytes(torch.device("cpu")) > held.numel() * 4
