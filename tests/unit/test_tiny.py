"""The tiny model kit: tokenizer and chat template, deterministic builds, the cache, loadability.

Tests that read the full build use the session fixture ``tiny_models`` (built once, then cached
under FACTORY_CACHE); determinism is checked on a miniature spec that builds in seconds.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import pytest

from factory import models, synthetic, tiny, tiny_training

MINI = dataclasses.replace(
    tiny.SPEC,
    teacher=tiny.Shape(hidden=64, heads=1, kv_heads=1, layers=1, intermediate=64),
    student=tiny.Shape(hidden=64, heads=1, kv_heads=1, layers=1, intermediate=64),
    train_problems=64,
    teacher_steps=2,
    validation_problems=2,
    check_every=1,
    batch_size=4,
    reward_steps=1,
    eval_problems=4,
    max_new_tokens=4,
)


@pytest.fixture(scope="module")
def tokenizer():
    return tiny.build_tokenizer()


@pytest.mark.parametrize(
    "text",
    [
        "What is 7+5+9-3?",
        "7+5=12\n12+9=21\n</think>\n\n\\boxed{21}",
        "\tdef f(x):\n\t\treturn x  # ~`|{}",
        " leading  spaces ",
        "Unicode: café, 日本, ✓",
    ],
)
def test_tokenizer_round_trips_text(tokenizer, text):
    assert tokenizer.decode(tokenizer.encode(text, add_special_tokens=False)) == text


@pytest.mark.parametrize("token", [tiny.BOS, tiny.EOS, tiny.PAD, tiny.USER, tiny.ASSISTANT, tiny.THINK, tiny.END_THINK])
def test_special_tokens_are_single_tokens(tokenizer, token):
    assert len(tokenizer.encode(token, add_special_tokens=False)) == 1


def test_encode_adds_no_special_tokens_by_itself(tokenizer):
    assert tokenizer.encode("ab") == tokenizer.encode("ab", add_special_tokens=False)


def test_think_tags_survive_skip_special_tokens(tokenizer):
    ids = tokenizer.encode("x\n</think>\n\n\\boxed{1}" + tiny.EOS, add_special_tokens=False)
    assert tokenizer.decode(ids, skip_special_tokens=True) == "x\n</think>\n\n\\boxed{1}"


def test_generation_prompt_forces_think(tokenizer):
    prompt = tiny.chat_prompt(tokenizer, "hi")
    assert prompt == f"{tiny.BOS}{tiny.USER}hi{tiny.ASSISTANT}{tiny.THINK}\n"


@pytest.mark.parametrize("system", [None, "You are helpful."])
def test_generation_prompt_is_a_token_prefix_of_the_assistant_turn(tokenizer, system):
    head = [{"role": "system", "content": system}] if system else []
    user = head + [{"role": "user", "content": "What is 1+2+3?"}]
    full = user + [{"role": "assistant", "content": "<think>\n" + synthetic.completion_for("What is 1+2+3?")}]
    prompt_ids = tokenizer.apply_chat_template(user, tokenize=True, add_generation_prompt=True, return_dict=False)
    full_ids = tokenizer.apply_chat_template(full, tokenize=True, return_dict=False)
    assert full_ids[: len(prompt_ids)] == prompt_ids
    assert full_ids[-1] == tokenizer.eos_token_id


def test_saved_tokenizer_reloads_with_its_chat_template(tokenizer, tmp_path):
    from transformers import AutoTokenizer

    tokenizer.save_pretrained(tmp_path)
    loaded = AutoTokenizer.from_pretrained(tmp_path)
    messages = [{"role": "user", "content": "What is 1+1+1?"}]
    assert loaded.apply_chat_template(messages, tokenize=False, add_generation_prompt=True) == tiny.chat_prompt(tokenizer, messages[0]["content"])
    assert loaded.encode("a\nb") == tokenizer.encode("a\nb")


def test_tokenizer_loaded_from_a_qwen2_model_dir_encodes_identically(tokenizer, tmp_path):
    """transformers 5 loads a qwen2 model dir's tokenizer as Qwen2Tokenizer, whatever
    tokenizer_config.json says; that must not change a single token id."""
    from transformers import AutoTokenizer

    tokenizer.save_pretrained(tmp_path)
    tiny._qwen2_config(tiny.SPEC.student, tokenizer, tiny.SPEC).save_pretrained(tmp_path)
    loaded = AutoTokenizer.from_pretrained(tmp_path)
    prompt = tiny.chat_prompt(tokenizer, synthetic.user_message("What is 7+5+9-3?")) + synthetic.completion_for("What is 7+5+9-3?")
    assert loaded.encode(prompt, add_special_tokens=False) == tokenizer.encode(prompt, add_special_tokens=False)


def test_spec_hash_changes_with_any_field():
    assert dataclasses.replace(tiny.SPEC, teacher_steps=tiny.SPEC.teacher_steps + 1).hash() != tiny.SPEC.hash()


def test_build_is_byte_for_byte_deterministic(tmp_path):
    first, second = tiny.build(str(tmp_path / "a"), seed=5, spec=MINI), tiny.build(str(tmp_path / "b"), seed=5, spec=MINI)
    for name in ("teacher", "student", "reward"):
        a, b = Path(getattr(first, name)), Path(getattr(second, name))
        assert (a / "model.safetensors").read_bytes() == (b / "model.safetensors").read_bytes(), name
        assert (a / "tokenizer.json").read_bytes() == (b / "tokenizer.json").read_bytes(), name


def test_build_seed_changes_the_weights(tmp_path):
    first, second = tiny.build(str(tmp_path / "a"), seed=1, spec=MINI), tiny.build(str(tmp_path / "b"), seed=2, spec=MINI)
    assert (Path(first.student) / "model.safetensors").read_bytes() != (Path(second.student) / "model.safetensors").read_bytes()


def test_cli_rejects_seed_without_out():
    with pytest.raises(SystemExit):
        tiny.main(["build", "--seed", "3"])


def test_ensure_returns_the_cached_build_quickly(tiny_models):
    start = time.monotonic()
    again = tiny.ensure()
    assert time.monotonic() - start < 2
    assert again == tiny_models


@pytest.mark.parametrize("name", ["teacher", "student", "reward", "tokenizer"])
def test_resolve_model_maps_tiny_names_to_the_cache(tiny_models, name):
    assert models.resolve_model(f"tiny:{name}") == getattr(tiny_models, name)


@pytest.mark.parametrize(("path", "expected"), [("/models/qwen", "/models/qwen"), ("Qwen/Qwen2.5-0.5B", "Qwen/Qwen2.5-0.5B")])
def test_resolve_model_leaves_other_paths_alone(path, expected):
    assert models.resolve_model(path) == expected


def test_resolve_model_rejects_unknown_tiny_names():
    with pytest.raises(ValueError, match="unknown tiny model"):
        models.resolve_model("tiny:giant")


def test_build_info_records_seed_spec_and_sizes(tiny_models):
    info = tiny_models.info
    assert info["seed"] == 0 and info["spec_hash"] == tiny.SPEC.hash()
    assert info["student"]["params"] < info["teacher"]["params"]


def test_teacher_solves_most_heldout_problems(tiny_models):
    assert tiny_models.info["teacher"]["greedy_accuracy"] >= 0.8


def test_reward_model_gives_one_finite_score_per_chat(tiny_models):
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(tiny_models.reward)
    tokenizer = AutoTokenizer.from_pretrained(tiny_models.reward)
    good, bad = tiny_training.reward_pairs(tokenizer, ["What is 1+2+3?", "What is 9-4+7+1?"], seed=0)
    with torch.no_grad():
        scores = tiny_training.reward_scores(model, tokenizer, good + bad)
    assert scores.shape == (4,) and torch.isfinite(scores).all()


def test_models_load_with_transformers_auto_classes(tiny_models):
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    for path in (tiny_models.teacher, tiny_models.student):
        config = AutoModelForCausalLM.from_pretrained(path).config
        assert config.hidden_size // config.num_attention_heads == 64
    reward = AutoModelForSequenceClassification.from_pretrained(tiny_models.reward)
    assert reward.config.num_labels == 1 and reward.config.pad_token_id is not None


def test_teacher_loaded_from_disk_solves_heldout_problems(tiny_models):
    """Loaded the way users load it (AutoTokenizer on the model dir), not with the build's objects."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_models.teacher)
    tokenizer = AutoTokenizer.from_pretrained(tiny_models.teacher)
    assert tiny_training.accuracy(model, tokenizer, synthetic.make_problems(20, seed=0, split="heldout"), max_new_tokens=64) >= 0.8


@pytest.mark.slow
def test_rebuild_matches_the_cached_build_byte_for_byte(tiny_models, tmp_path):
    rebuilt = tiny.build(str(tmp_path / "again"), seed=0)
    for name in ("teacher", "student", "reward"):
        cached, fresh = Path(getattr(tiny_models, name)), Path(getattr(rebuilt, name))
        assert (cached / "model.safetensors").read_bytes() == (fresh / "model.safetensors").read_bytes(), name


@pytest.mark.slow
def test_student_learns_the_task_from_1000_teacher_samples(tiny_models):
    """The distillation premise: SFT of the untrained student on ~1000 correct teacher samples
    (T=0.6) reaches at least 85% of the teacher's greedy held-out accuracy."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(tiny_models.teacher)
    teacher = AutoModelForCausalLM.from_pretrained(tiny_models.teacher)
    problems = synthetic.make_problems(1000, seed=7)
    users = [synthetic.user_message(problem["prompt"]) for problem in problems]
    completions = tiny_training.generate(teacher, tokenizer, users, max_new_tokens=64, temperature=0.6, seed=7)
    kept = [(u, c) for u, c, p in zip(users, completions, problems, strict=True) if synthetic.is_correct(c, p["reference"])]
    student = AutoModelForCausalLM.from_pretrained(tiny_models.student)
    tiny_training.train_sft(student, tiny_training.sft_examples(tokenizer, kept), steps=800, batch_size=32, learning_rate=3e-3, warmup=20, seed=0)
    heldout = synthetic.make_problems(200, seed=0, split="heldout")
    assert tiny_training.accuracy(student, tokenizer, heldout, max_new_tokens=64) >= 0.85 * tiny_models.info["teacher"]["greedy_accuracy"]
