"""The synthetic arithmetic task: deterministic disjoint splits, exact solutions, answer checks."""

from __future__ import annotations

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


def test_reference_is_the_value_of_the_expression():
    for row in synthetic.make_problems(200, seed=0):
        expression = row["prompt"].removeprefix("What is ").removesuffix("?")
        assert int(row["reference"]) == eval(expression)  # noqa: S307 - digits and +/- only


def test_running_totals_stay_non_negative():
    for row in synthetic.make_problems(200, seed=0):
        reasoning, _ = synthetic.solve(row["prompt"])
        assert all(int(line.split("=")[1]) >= 0 for line in reasoning.splitlines())


@pytest.mark.parametrize(
    ("prompt", "expected"),
    [
        ("What is 7+5+9-3?", ("7+5=12\n12+9=21\n21-3=18", "\\boxed{18}")),
        ("What is 4-4+1?", ("4-4=0\n0+1=1", "\\boxed{1}")),
        (synthetic.user_message("What is 2+3+4?"), ("2+3=5\n5+4=9", "\\boxed{9}")),
    ],
)
def test_solve_writes_one_line_per_step(prompt, expected):
    assert synthetic.solve(prompt) == expected


def test_solve_rejects_text_outside_the_task():
    with pytest.raises(ValueError, match="not a synthetic"):
        synthetic.solve("What is the capital of France?")


def test_completion_is_in_r1_format():
    assert synthetic.completion_for("What is 1+2+3?") == "1+2=3\n3+3=6\n</think>\n\n\\boxed{6}"


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


@pytest.mark.parametrize(("n", "split"), [(-1, "train"), (3, "test")])
def test_make_problems_rejects_bad_arguments(n, split):
    with pytest.raises(ValueError, match="split|n must"):
        synthetic.make_problems(n, seed=0, split=split)


def test_wrong_completion_has_a_wrong_final_answer():
    import random

    rng = random.Random(0)
    for row in synthetic.make_problems(200, seed=0):
        text = synthetic.wrong_completion_for(row["prompt"], rng)
        assert synthetic.extract_answer(text) is not None and not synthetic.is_correct(text, row["reference"])
