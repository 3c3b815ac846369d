"""The synthetic addition task: deterministic disjoint splits, exact solutions, the slip model,
rewording, answer checks (and math-verify's agreement with them)."""

from __future__ import annotations

import random

import pytest

from factory import synthetic


def test_make_problems_is_deterministic():
    assert synthetic.make_problems(50, seed=3) == synthetic.make_problems(50, seed=3)


def test_seeds_draw_different_problems():
    assert synthetic.make_problems(20, seed=1) != synthetic.make_problems(20, seed=2)


def test_train_and_heldout_are_disjoint_by_content():
    train = {row["prompt"] for row in synthetic.make_problems(2000, seed=0, split="train")}
    heldout = {row["prompt"] for row in synthetic.make_problems(500, seed=0, split="heldout")}
    assert not train & heldout


def test_split_membership_does_not_depend_on_seed():
    for seed in (0, 1):
        assert all(synthetic.split_of(row["prompt"]) == "heldout" for row in synthetic.make_problems(100, seed, "heldout"))


def test_prompt_ids_are_unique_content_hashes():
    rows = synthetic.make_problems(300, seed=0)
    assert len({row["prompt_id"] for row in rows}) == len(rows)
    assert all(row["prompt_id"] == synthetic.prompt_id(row["prompt"]) for row in rows)
    assert all(row["prompt_id"].startswith("syn-") and len(row["prompt_id"]) == 20 for row in rows)


def test_rows_have_the_prompt_columns():
    row = synthetic.make_problems(1, seed=0)[0]
    assert set(row) == {"prompt_id", "task", "prompt", "reference"}
    assert row["task"] == "math"


def test_problems_add_five_to_seven_distinct_single_digits():
    rows = synthetic.make_problems(300, seed=0)
    counts = {len(synthetic.operands(row["prompt"])) for row in rows}
    assert counts == set(synthetic.OPERAND_COUNTS) == {5, 6, 7}
    assert all(1 <= value <= 9 for row in rows for value in synthetic.operands(row["prompt"]))
    assert all(len(set(synthetic.operands(row["prompt"]))) == len(synthetic.operands(row["prompt"])) for row in rows)


def test_reference_is_the_value_of_the_sum():
    for row in synthetic.make_problems(200, seed=0):
        expression = row["prompt"].removeprefix("What is ").removesuffix("?")
        assert int(row["reference"]) == eval(expression)  # noqa: S307 - digits and + only


@pytest.mark.parametrize(
    ("prompt", "expected"),
    [
        ("What is 7+5+9+3+8?", ("7+5=12\n12+9=21\n21+3=24\n24+8=32", "\\boxed{32}")),
        (synthetic.user_message("What is 2+3+4+1+1?"), ("2+3=5\n5+4=9\n9+1=10\n10+1=11", "\\boxed{11}")),
        ("Compute 2 + 3 + 4.", ("2+3=5\n5+4=9", "\\boxed{9}")),
    ],
)
def test_solve_writes_one_line_per_addition(prompt, expected):
    assert synthetic.solve(prompt) == expected


def test_solve_rejects_text_outside_the_task():
    with pytest.raises(ValueError, match="not a synthetic"):
        synthetic.solve("What is the capital of France?")


def test_completion_is_in_r1_format():
    assert synthetic.completion_for("What is 1+2+3+4+5?") == "1+2=3\n3+3=6\n6+4=10\n10+5=15\n</think>\n\n\\boxed{15}"


@pytest.mark.parametrize(("total", "term", "expected"), [(7, 5, True), (12, 9, True), (12, 7, False), (3, 6, False), (19, 1, True)])
def test_carries_means_the_tens_digit_changes(total, term, expected):
    assert synthetic.carries(total, term) is expected


def test_slipped_completion_without_slips_is_the_gold_chain():
    rng = random.Random(0)
    for row in synthetic.make_problems(50, seed=0):
        assert synthetic.slipped_completion(row["prompt"], rng, carry_slip_rate=0.0) == synthetic.completion_for(row["prompt"])


def test_a_slip_forgets_the_carry_and_later_steps_follow_it():
    assert synthetic.slipped_completion("What is 7+5+9+3+8?", random.Random(0), carry_slip_rate=1.0) == (
        "7+5=2\n2+9=1\n1+3=4\n4+8=2\n</think>\n\n\\boxed{2}"
    )


def test_slips_vary_between_calls():
    rng = random.Random(0)
    chains = {synthetic.slipped_completion("What is 7+5+9+3+8+6?", rng, carry_slip_rate=0.5) for _ in range(40)}
    answers = {synthetic.extract_answer(chain) for chain in chains}
    assert len(answers) >= 4 and "38" in answers


def test_slipped_chains_err_only_by_forgotten_carries():
    rng = random.Random(1)
    for row in synthetic.make_problems(200, seed=0):
        chain = synthetic.slipped_completion(row["prompt"], rng, carry_slip_rate=0.3)
        values = synthetic.operands(row["prompt"])
        previous = values[0]
        for line, expected_term in zip(chain.split("\n</think>")[0].splitlines(), values[1:], strict=True):
            left, result = line.split("=")
            total, term = map(int, left.split("+"))
            assert (total, term) == (previous, expected_term)
            assert int(result) == total + term or (synthetic.carries(total, term) and int(result) == total + term - 10)
            previous = int(result)
        assert synthetic.extract_answer(chain) == str(previous)


def test_reword_keeps_the_problem_and_changes_the_text():
    for index, row in enumerate(synthetic.make_problems(100, seed=0)):
        reworded = synthetic.reword(row["prompt"], seed=index)
        assert reworded != row["prompt"]
        assert synthetic.operands(reworded) == synthetic.operands(row["prompt"])
        assert synthetic.solve(reworded) == synthetic.solve(row["prompt"])


def test_reword_is_deterministic_and_varies_with_the_seed():
    prompt = "What is 7+5+9+3+8?"
    assert synthetic.reword(prompt, 1) == synthetic.reword(prompt, 1)
    assert len({synthetic.reword(prompt, seed) for seed in range(20)}) >= 4


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("\\boxed{18}", "18"),
        ("first \\boxed{1} then \\boxed{ 2 }", "2"),
        ("\\boxed{\\frac{1}{2}}", "\\frac{1}{2}"),
        ("no answer here", None),
        ("\\boxed{12", None),
    ],
)
def test_extract_answer_reads_the_last_box(text, expected):
    assert synthetic.extract_answer(text) == expected


@pytest.mark.parametrize(
    ("text", "reference", "expected"),
    [
        ("7+5=12\n</think>\n\n\\boxed{12}", "12", True),
        ("\\boxed{12}", " 12 ", True),
        ("\\boxed{13}", "12", False),
        ("12", "12", False),
    ],
)
def test_is_correct_compares_the_boxed_answer_exactly(text, reference, expected):
    assert synthetic.is_correct(text, reference) is expected


def test_math_verify_agrees_with_the_exact_check():
    from factory.verifiers.math_verifier import judge_math

    rng = random.Random(2)
    for row in synthetic.make_problems(30, seed=0):
        chain = synthetic.slipped_completion(row["prompt"], rng, carry_slip_rate=0.5)
        expected = "correct" if synthetic.is_correct(chain, row["reference"]) else "wrong"
        assert judge_math(chain, row["reference"]).status == expected


@pytest.mark.parametrize(("n", "split"), [(-1, "train"), (3, "test")])
def test_make_problems_rejects_bad_arguments(n, split):
    with pytest.raises(ValueError, match="split|n must"):
        synthetic.make_problems(n, seed=0, split=split)


def test_with_context_puts_digit_free_prose_before_the_same_question():
    prompt = synthetic.make_problems(1, seed=0)[0]["prompt"]
    long = synthetic.with_context(prompt, 370, seed=3)
    assert long.endswith(prompt) and 370 <= len(long) - len(prompt) < 400
    assert not any(ch.isdigit() for ch in long[: -len(prompt)])
    assert synthetic.solve(long) == synthetic.solve(prompt) and long == synthetic.with_context(prompt, 370, seed=3)


def test_a_context_source_ingests_long_prompts_with_their_own_ids():
    from factory.stages.ingest import PromptSource, _records

    source = PromptSource(name="s", kind="synthetic", synthetic_n=3, synthetic_seed=3, synthetic_context_chars=370)
    rows = [record for _, record in _records(source, None)]
    assert len(rows) == 3 and all(len(row["prompt"]) > 370 for row in rows)
    assert all(row["prompt_id"] == synthetic.prompt_id(row["prompt"]) for row in rows)
    with pytest.raises(ValueError, match="synthetic_context_chars"):
        PromptSource(name="s", kind="synthetic", synthetic_n=1, synthetic_context_chars=-1)
