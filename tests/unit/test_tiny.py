"""The tiny model kit: tokenizer and chat template, deterministic builds, the cache and its lock,
the build's recorded figures, and what the built models do when loaded from disk.

Tests that read the full build use the session fixture ``tiny_models`` (built once, then cached
under FACTORY_CACHE); determinism is checked on a miniature spec that builds in seconds. The
figure tests re-measure on held-out problems the build did not use (seed 1), loading the models
the way the factory's stages do.
"""

from __future__ import annotations

import dataclasses
import fcntl
import json
import logging
import threading
import time
from pathlib import Path

import pytest

from factory import models, synthetic, tiny, tiny_training

MINI = dataclasses.replace(
    tiny.SPEC,
    teacher=tiny.Shape(hidden=64, heads=1, kv_heads=1, layers=1, intermediate=64),
    student=tiny.Shape(hidden=64, heads=1, kv_heads=1, layers=1, intermediate=64),
    train_problems=64,
    clean_steps=2,
    slip_steps=1,
    batch_size=4,
    eval_problems=4,
    eval_samples=2,
    reward_prompts=4,
    reward_samples=2,
    reward_steps=1,
    reward_pairs_per_step=2,
    max_new_tokens=4,
)
SAMPLING = tiny.SPEC.sampling(seed=11)


@pytest.fixture(scope="module")
def tokenizer():
    return tiny.build_tokenizer()


@pytest.mark.parametrize(
    "text",
    [
        "What is 7+5+9+3+8?",
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
    user = head + [{"role": "user", "content": "What is 1+2+3+4+5?"}]
    full = user + [{"role": "assistant", "content": "<think>\n" + synthetic.completion_for("What is 1+2+3+4+5?")}]
    prompt_ids = tokenizer.apply_chat_template(user, tokenize=True, add_generation_prompt=True, return_dict=False)
    full_ids = tokenizer.apply_chat_template(full, tokenize=True, return_dict=False)
    assert full_ids[: len(prompt_ids)] == prompt_ids
    assert full_ids[-1] == tokenizer.eos_token_id


def test_chat_text_renders_as_the_reward_stage_does(tokenizer):
    text = tiny_training.chat_text(tokenizer, "q", "a\n</think>\n\n\\boxed{1}")
    assert text == f"{tiny.BOS}{tiny.USER}q{tiny.ASSISTANT}{tiny.THINK}\na\n</think>\n\n\\boxed{{1}}{tiny.EOS}"


def test_saved_tokenizer_reloads_with_its_chat_template(tokenizer, tmp_path):
    from transformers import AutoTokenizer

    tokenizer.save_pretrained(tmp_path)
    loaded = AutoTokenizer.from_pretrained(tmp_path)
    messages = [{"role": "user", "content": "What is 1+1+1+1+1?"}]
    assert loaded.apply_chat_template(messages, tokenize=False, add_generation_prompt=True) == tiny.chat_prompt(tokenizer, messages[0]["content"])
    assert loaded.encode("a\nb") == tokenizer.encode("a\nb")


def test_tokenizer_loaded_from_a_qwen2_model_dir_encodes_identically(tokenizer, tmp_path):
    """transformers 5 loads a qwen2 model dir's tokenizer as Qwen2Tokenizer, whatever
    tokenizer_config.json says; that must not change a single token id."""
    from transformers import AutoTokenizer

    tokenizer.save_pretrained(tmp_path)
    tiny.qwen2_config(tiny.SPEC.student, tokenizer).save_pretrained(tmp_path)
    loaded = AutoTokenizer.from_pretrained(tmp_path)
    question = "What is 7+5+9+3+8?"
    prompt = tiny.chat_prompt(tokenizer, synthetic.user_message(question)) + synthetic.completion_for(question)
    assert loaded.encode(prompt, add_special_tokens=False) == tokenizer.encode(prompt, add_special_tokens=False)


def test_spec_hash_changes_with_any_field():
    assert dataclasses.replace(tiny.SPEC, carry_slip_rate=tiny.SPEC.carry_slip_rate + 0.01).hash() != tiny.SPEC.hash()


@pytest.mark.parametrize(("graded", "k", "expected"), [([[True, False]], 1, 0.5), ([[True, False]], 2, 1.0),
                                                       ([[False, False], [True, True]], 1, 0.5), ([[True, False, False]], 2, 2 / 3)])
def test_pass_at_k_is_the_unbiased_estimate(graded, k, expected):
    assert tiny_training.pass_at_k(graded, k) == pytest.approx(expected)


@pytest.mark.parametrize(("positive", "negative", "expected"), [([2.0, 3.0], [1.0], 1.0), ([1.0], [1.0], 0.5),
                                                                ([1.0, 3.0], [2.0], 0.5), ([], [1.0], None)])
def test_auc_counts_ties_half(positive, negative, expected):
    assert tiny_training.auc(positive, negative) == expected


def test_reward_pairs_pair_right_with_wrong_of_the_same_problem():
    problems = synthetic.make_problems(2, seed=0)
    completions = [["a", "b", "c"], ["d", "e"]]
    triples = tiny_training.reward_pairs(problems, completions, [[True, False, False], [True, True]], per_prompt=5, seed=0)
    assert sorted(triples) == [(synthetic.user_message(problems[0]["prompt"]), "a", wrong) for wrong in ("b", "c")]


def _pair_sums(model, tokenizer, triples):
    goods = tiny_training.reward_scores(model, tokenizer, [tiny_training.chat_text(tokenizer, u, g) for u, g, _ in triples])
    bads = tiny_training.reward_scores(model, tokenizer, [tiny_training.chat_text(tokenizer, u, b) for u, _, b in triples])
    return sum((g + b) ** 2 for g, b in zip(goods, bads, strict=True)) / len(triples)


def test_reward_centering_keeps_pair_scores_around_zero(tokenizer):
    import random

    rng = random.Random(0)
    triples = [(synthetic.user_message(p["prompt"]), synthetic.completion_for(p["prompt"]),
                synthetic.slipped_completion(p["prompt"], rng, carry_slip_rate=1.0)) for p in synthetic.make_problems(8, seed=0)]
    sums = {}
    for coefficient in (0.0, 1.0):
        model = tiny.new_model(MINI.teacher, tokenizer, seed=0, spec=MINI, reward=True)
        tiny_training.train_reward(model, tokenizer, triples, steps=12, pairs_per_step=4, learning_rate=2e-2, warmup=1,
                                   seed=0, center_coefficient=coefficient)
        sums[coefficient] = _pair_sums(model, tokenizer, triples)
    assert sums[1.0] < 0.5 * sums[0.0]


def test_progress_logs_at_most_one_line_per_interval_and_the_last(caplog):
    caplog.set_level(logging.INFO, logger="factory.tiny")
    progress = tiny_training.Progress("thing", total=1000, every_s=3600)
    for step in range(1, 1001):
        progress.update(step, "loss 1.0")
    assert [r.getMessage() for r in caplog.records if r.name == "factory.tiny"] == [caplog.records[-1].getMessage()]
    assert caplog.records[-1].getMessage().startswith("thing: 1000/1000 loss 1.0, done in")


def test_build_is_byte_for_byte_deterministic(tmp_path):
    first, second = tiny.build(str(tmp_path / "a"), seed=5, spec=MINI), tiny.build(str(tmp_path / "b"), seed=5, spec=MINI)
    for name in ("teacher", "student", "reward"):
        a, b = Path(getattr(first, name)), Path(getattr(second, name))
        assert (a / "model.safetensors").read_bytes() == (b / "model.safetensors").read_bytes(), name
        assert (a / "tokenizer.json").read_bytes() == (b / "tokenizer.json").read_bytes(), name


def test_build_seed_changes_the_weights(tmp_path):
    first, second = tiny.build(str(tmp_path / "a"), seed=1, spec=MINI), tiny.build(str(tmp_path / "b"), seed=2, spec=MINI)
    assert (Path(first.student) / "model.safetensors").read_bytes() != (Path(second.student) / "model.safetensors").read_bytes()


def test_a_clean_cycle_that_misses_the_target_is_followed_by_another(tmp_path, caplog):
    spec = dataclasses.replace(MINI, clean_steps=3, clean_check_every=3, clean_cycles=2, clean_target=1.01)
    caplog.set_level(logging.WARNING, logger="factory.tiny")
    teacher = tiny.build(str(tmp_path / "a"), seed=0, spec=spec).info["teacher"]
    assert (teacher["clean_cycles"], teacher["clean_steps"], len(teacher["clean_validation_checks"])) == (2, 6, 2)
    assert not teacher["clean_target_reached"] and any("after 2 clean cycles" in r.getMessage() for r in caplog.records)
    reached = dataclasses.replace(spec, clean_target=0.0)  # the first check ends the clean steps
    assert tiny.build(str(tmp_path / "b"), seed=0, spec=reached).info["teacher"]["clean_cycles"] == 1


def test_build_logs_every_phase(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="factory.tiny")
    tiny.build(str(tmp_path / "a"), seed=0, spec=MINI)
    lines = [r.getMessage() for r in caplog.records if r.name == "factory.tiny"]
    for number, name in enumerate(tiny.PHASES, start=1):
        assert any(line.startswith(f"tiny build {number}/{len(tiny.PHASES)}: {name} done in") for line in lines), name


def test_cli_rejects_seed_without_out():
    with pytest.raises(SystemExit):
        tiny.main(["build", "--seed", "3"])


def test_is_built_is_false_for_an_empty_cache(tmp_path):
    assert not tiny.is_built(str(tmp_path / "nothing"))


def test_ensure_waits_for_another_builder_and_does_not_rebuild(tmp_path, caplog):
    """A second caller blocks on the lock, says so, and returns the build the first one finished."""
    caplog.set_level(logging.INFO, logger="factory.tiny")
    root = tmp_path / "kit"
    locked = threading.Event()

    def other_builder():
        with open(tmp_path / ".kit.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            locked.set()
            time.sleep(0.5)
            for name in ("tokenizer", "teacher", "student", "reward"):
                (root / name).mkdir(parents=True)
            (root / "tiny_build.json").write_text(json.dumps({"seed": 0}))

    thread = threading.Thread(target=other_builder)
    thread.start()
    locked.wait()
    built = tiny.ensure(str(root))
    thread.join()
    assert built.info == {"seed": 0}
    assert any("another process is building" in r.getMessage() for r in caplog.records)


def test_ensure_returns_the_cached_build_quickly(tiny_models):
    start = time.monotonic()
    again = tiny.ensure()
    assert time.monotonic() - start < 2
    assert again == tiny_models and tiny.is_built()


@pytest.mark.parametrize("name", ["teacher", "student", "reward", "tokenizer"])
def test_resolve_model_maps_tiny_names_to_the_cache(tiny_models, name):
    assert models.resolve_model(f"tiny:{name}") == getattr(tiny_models, name)


@pytest.mark.parametrize(("path", "expected"), [("/models/qwen", "/models/qwen"), ("Qwen/Qwen2.5-0.5B", "Qwen/Qwen2.5-0.5B")])
def test_resolve_model_leaves_other_paths_alone(path, expected):
    assert models.resolve_model(path) == expected


def test_resolve_model_rejects_unknown_tiny_names():
    with pytest.raises(ValueError, match="unknown tiny model"):
        models.resolve_model("tiny:giant")


def test_build_info_records_seed_spec_sizes_and_phase_times(tiny_models):
    info = tiny_models.info
    assert info["seed"] == 0 and info["spec_hash"] == tiny.SPEC.hash()
    assert info["student"]["params"] < info["teacher"]["params"]
    assert set(info["phase_seconds"]) == set(tiny.PHASES)


def test_build_info_records_a_good_but_fallible_teacher(tiny_models):
    """Sampled at the demo's settings the teacher solves 50-70% per sample and >= 90% within 8."""
    teacher = tiny_models.info["teacher"]
    assert 0.5 <= teacher["sampled_pass_at_1"] <= 0.7
    assert teacher["sampled_pass_at_8"] >= 0.9
    assert teacher["greedy_accuracy"] > teacher["sampled_pass_at_1"]


def test_build_info_records_that_the_teacher_learnt_the_task_before_its_slips(tiny_models):
    """The clean steps end on a measured accuracy, not a step count (``TinySpec.clean_target``)."""
    teacher = tiny_models.info["teacher"]
    assert teacher["clean_target_reached"] and teacher["clean_validation_accuracy"] >= tiny.SPEC.clean_target
    assert teacher["clean_steps"] <= tiny.SPEC.clean_cycles * tiny.SPEC.clean_steps
    assert teacher["clean_steps"] % tiny.SPEC.clean_check_every == 0  # each cycle ends at a check or its last step
    assert teacher["clean_validation_checks"][-1] == teacher["clean_validation_accuracy"]


def test_sft_stops_at_the_first_check_that_says_so(tokenizer):
    model = tiny.new_model(MINI.student, tokenizer, seed=0, spec=MINI)
    examples = tiny_training.sft_examples(tokenizer, [("What is 1+2+3+4+5?", "1+2=3")] * 8)
    checked = []

    def stop(checked_model) -> bool:
        checked.append(checked_model.training)
        return len(checked) == 2

    _, steps = tiny_training.train_sft(model, examples, steps=10, batch_size=2, learning_rate=1e-3, warmup=1, seed=0,
                                       stop_when=stop, check_every=3)
    assert steps == 6 and checked == [False, False]  # checked in eval mode, at steps 3 and 6


def test_build_info_records_a_reward_model_that_ranks_right_above_wrong(tiny_models):
    assert tiny_models.info["reward"]["heldout_auc"] >= 0.8


@pytest.fixture(scope="module")
def fresh_samples(tiny_models):
    """Teacher samples (8 each, the demo's sampling) on 50 held-out problems the build never saw."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_models.teacher)
    tokenizer = AutoTokenizer.from_pretrained(tiny_models.teacher)
    problems = synthetic.make_problems(50, seed=1, split="heldout")
    completions = tiny_training.solve_problems(model, tokenizer, problems, SAMPLING, n=8)
    return problems, completions, tiny_training.grades(problems, completions)


def test_teacher_loaded_from_disk_is_good_but_fallible(fresh_samples):
    _, _, graded = fresh_samples
    assert 0.4 <= tiny_training.pass_at_k(graded, 1) <= 0.8
    assert tiny_training.pass_at_k(graded, 8) >= 0.85


def test_teacher_errors_are_slips_that_vary_between_samples(fresh_samples):
    """Most problems the teacher gets wrong once it also gets right, and its wrong answers differ."""
    problems, completions, graded = fresh_samples
    flawed = [(p, texts, marks) for p, texts, marks in zip(*fresh_samples, strict=True) if not all(marks)]
    assert sum(any(marks) for _, _, marks in flawed) >= 0.85 * len(flawed)
    wrong_answers = [{synthetic.extract_answer(t) for t, ok in zip(texts, marks, strict=True) if not ok} for _, texts, marks in flawed]
    assert sum(len(answers) > 1 for answers in wrong_answers if answers) >= 0.2 * len(flawed)


def test_reward_model_loaded_from_disk_ranks_fresh_samples(tiny_models, fresh_samples):
    """Loaded as the reward stage loads it, on chats rendered as the stage renders them."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(tiny_models.reward).eval()
    tokenizer = AutoTokenizer.from_pretrained(tiny_models.reward)
    quality = tiny_training.reward_quality(model, tokenizer, *fresh_samples)
    assert quality["auc"] >= 0.75


def test_models_load_with_transformers_auto_classes(tiny_models):
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    for path in (tiny_models.teacher, tiny_models.student):
        config = AutoModelForCausalLM.from_pretrained(path).config
        assert config.hidden_size // config.num_attention_heads == 64
    reward = AutoModelForSequenceClassification.from_pretrained(tiny_models.reward)
    assert reward.config.num_labels == 1 and reward.config.pad_token_id is not None
    assert reward.config.hidden_size // reward.config.num_attention_heads == 64


@pytest.mark.slow
def test_rebuild_matches_the_cached_build_byte_for_byte(tiny_models, tmp_path):
    rebuilt = tiny.build(str(tmp_path / "again"), seed=0)
    for name in ("teacher", "student", "reward"):
        cached, fresh = Path(getattr(tiny_models, name)), Path(getattr(rebuilt, name))
        assert (cached / "model.safetensors").read_bytes() == (fresh / "model.safetensors").read_bytes(), name


@pytest.mark.slow
def test_student_distilled_from_verified_samples_reaches_85_percent_of_the_teacher(tiny_models):
    """The demo's premise: SFT of the untrained student on ~1000 prompts' verified teacher samples
    reaches at least 85% of the teacher's sampled held-out pass@1 under the same sampling."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_models.teacher)
    teacher = AutoModelForCausalLM.from_pretrained(tiny_models.teacher)
    problems = synthetic.make_problems(1000, seed=7)
    completions = tiny_training.solve_problems(teacher, tokenizer, problems, SAMPLING, n=2)
    kept = [(synthetic.user_message(p["prompt"]), text) for p, texts in zip(problems, completions, strict=True)
            for text in texts if synthetic.is_correct(text, p["reference"])]
    student = AutoModelForCausalLM.from_pretrained(tiny_models.student)
    tiny_training.train_sft(student, tiny_training.sft_examples(tokenizer, kept), steps=600, batch_size=32,
                            learning_rate=3e-3, warmup=20, seed=0)
    heldout = synthetic.make_problems(200, seed=0, split="heldout")
    graded = tiny_training.grades(heldout, tiny_training.solve_problems(student, tokenizer, heldout, SAMPLING, n=2))
    assert tiny_training.pass_at_k(graded, 1) >= 0.85 * tiny_models.info["teacher"]["sampled_pass_at_1"]
