"""Multiple-choice verifier: option parsing, reference resolution, and a table of answers (R1 formatting
variations and adversarial ones) with the verdict each must get."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from factory.verifiers.choice import NAME, VERSION, judge_choice, parse_options

LOGIQA = """In a certain school, all students who like chess also like go. Some students who like go do not like
bridge. Which of the following must be true?
A. Some students who like chess do not like bridge.
B. All students who like go like chess.
C. Some students who like go like chess or do not like bridge.
D. No student likes bridge."""

GPQA = """What is the ground-state term symbol of the nitrogen atom?

(A) 2P
(B) 4S
(C) 2D
(D) 3P

Please reason step by step and put the letter of your final answer within \\boxed{}."""

INLINE = "Which is a prime number? Choices: (A) 21 (B) 27 (C) 29 (D) 33"
CAPITALS = "What is the capital of France?\nA) London\nB) Berlin\nC) Paris\nD) Madrid"


@pytest.mark.parametrize("prompt, expected", [
    (LOGIQA, ["A", "B", "C", "D"]),
    (GPQA, ["A", "B", "C", "D"]),
    (INLINE, ["A", "B", "C", "D"]),
    ("Pick one:\n  - [A] red\n  - [B] blue\n", ["A", "B"]),
    ("Pick:\na) red\nb) blue\nc) green", ["A", "B", "C"]),
    ("选择：\nA．红\nB．蓝", ["A", "B"]),
    ("A. An early line that looks like an option.\nThen prose.\nA. x\nB. y\nC. z", ["A", "B", "C"]),
    ("No options here: what is 2+2?", []),
    ("Only one:\nA. alone", []),
    ("Out of order:\nA. x\nC. y", []),
])
def test_parse_options(prompt, expected):
    assert list(parse_options(prompt)) == expected


def test_option_texts_are_kept():
    assert parse_options(INLINE) == {"A": "21", "B": "27", "C": "29", "D": "33"}
    assert parse_options(CAPITALS)["C"] == "Paris"


@pytest.mark.parametrize("answer, reference, prompt, status", [
    # boxed letters, with the usual LaTeX and markdown wrappers
    ("The answer is \\boxed{C}.", "C", LOGIQA, "correct"),
    ("\\boxed{(C)}", "C", LOGIQA, "correct"),
    ("$\\boxed{\\text{C}}$", "C", LOGIQA, "correct"),
    ("**Final Answer**\n\\[\\boxed{\\textbf{(B)}}\\]", "B", GPQA, "correct"),
    ("\\boxed{c}", "C", LOGIQA, "correct"),
    ("\\boxed{C. Some students who like go like chess or do not like bridge.}", "C", LOGIQA, "correct"),
    ("\\boxed{Paris}", "C", CAPITALS, "correct"),
    ("\\boxed{29}", "C", INLINE, "correct"),
    ("\\boxed{B}", "C", LOGIQA, "wrong"),
    # statements, markdown-bold and colons
    ("The answer is (C).", "C", LOGIQA, "correct"),
    ("Answer: C", "C", LOGIQA, "correct"),
    ("**Answer:** C", "C", LOGIQA, "correct"),
    ("The correct answer is **(B) 4S**.", "B", GPQA, "correct"),
    ("Therefore, the final answer is: B", "B", GPQA, "correct"),
    ("So the answer is c.", "C", LOGIQA, "correct"),
    ("Option C is correct.", "C", LOGIQA, "correct"),
    ("I choose D.", "D", LOGIQA, "correct"),
    ("The answer is Paris.", "C", CAPITALS, "correct"),
    ("答案是C", "C", LOGIQA, "correct"),
    # the whole answer (or its last line) is the choice
    ("C", "C", LOGIQA, "correct"),
    ("**(C)**", "C", LOGIQA, "correct"),
    ("Working through each option...\n\n(C) Paris", "C", CAPITALS, "correct"),
    ("Paris", "C", CAPITALS, "correct"),
    # several letters mentioned: the final stated choice wins
    ("Option A is wrong because chess says nothing about bridge. B reverses the rule. The answer is C.",
     "C", LOGIQA, "correct"),
    ("At first I thought the answer is A, but checking again, the answer is C.", "C", LOGIQA, "correct"),
    ("The answer is C. Option D is wrong, and so is A.", "C", LOGIQA, "correct"),
    ("The answer is not A; the answer is C.", "C", LOGIQA, "correct"),
    ("Answer: C\n\nOn reflection the answer is B.", "C", LOGIQA, "wrong"),
    ("The answer is B, though \\boxed{C} is what I submit.", "C", LOGIQA, "correct"),
    # the option text quoted in the reasoning, a different final choice
    ("Paris is famous, and London is large, but the answer is B.", "C", CAPITALS, "wrong"),
    ("Some might pick 'Paris', yet \\boxed{A}", "C", CAPITALS, "wrong"),
    ("Is it Paris? Berlin? I cannot tell.", "C", CAPITALS, "no_answer"),
    # hedges
    ("\\boxed{A, C}", "C", LOGIQA, "wrong"),
    ("The answer is B or D.", "D", LOGIQA, "wrong"),
    ("The answer is C and D is a distractor.", "C", LOGIQA, "correct"),
    # letters inside words and lowercase articles are no choice
    ("Answer: Carbon-based reasoning fails here.", "C", LOGIQA, "no_answer"),
    ("The answer is a bit unclear.", "A", LOGIQA, "no_answer"),
    ("Because all Chess lovers like Go, Bridge remains open.", "C", LOGIQA, "no_answer"),
    ("The answer is I think unknowable.", "C", LOGIQA, "no_answer"),
    # a box naming no option, or a letter past the options
    ("\\boxed{42}", "C", CAPITALS, "wrong"),
    ("\\boxed{E}", "C", LOGIQA, "wrong"),
    ("", "C", LOGIQA, "no_answer"),
    (None, "C", LOGIQA, "no_answer"),
])
def test_judge_choice(answer, reference, prompt, status):
    result = judge_choice(answer, reference, prompt)
    assert result.status == status, result.detail
    assert (result.verifier, result.version) == (NAME, VERSION)


@pytest.mark.parametrize("reference", ["C", "(C)", "c", "C.", "\\boxed{C}", " Paris ", "paris."])
def test_reference_is_a_letter_or_the_option_text(reference):
    assert judge_choice("\\boxed{C}", reference, CAPITALS).status == "correct"


@pytest.mark.parametrize("reference, prompt, why", [
    (None, CAPITALS, "no reference"),
    ("  ", CAPITALS, "no reference"),
    ("E", CAPITALS, "not an option"),
    ("Rome", CAPITALS, "matches 0 options"),
    ("Paris", "What is the capital of France?", "no parseable options"),
])
def test_unusable_reference_is_an_error(reference, prompt, why):
    result = judge_choice("\\boxed{C}", reference, prompt)
    assert result.status == "error" and why in result.detail


def test_letter_reference_works_without_parsed_options():
    assert judge_choice("The answer is (B).", "B", "Choose the best option for the blank.").status == "correct"
    assert judge_choice("The answer is (E).", "E", "Choose the best option for the blank.").status == "correct"


@pytest.mark.parametrize("prompt, reference, expected", [
    (CAPITALS, "Paris", True),
    ("Is 7 prime? Answer yes or no.", "C", True),
    ("Is 7 prime? Answer yes or no.", "yes", False),
    ("How many knights are there?", "3", False),
])
def test_applies_to_rows_with_options_or_a_letter_reference(prompt, reference, expected):
    from factory.verifiers.choice import applies

    assert applies(prompt, reference) is expected


@settings(max_examples=300, deadline=None)
@given(answer=st.one_of(st.none(), st.text(max_size=80), st.sampled_from(["\\boxed{", "answer is", "(A) (B)", "答案是"])
                        .flatmap(lambda seed: st.text(max_size=40).map(lambda tail: seed + tail))),
       reference=st.one_of(st.none(), st.text(max_size=10), st.sampled_from(list("ABCDEFGHIJabcd"))),
       prompt=st.one_of(st.none(), st.text(max_size=80), st.just(CAPITALS), st.just(INLINE)))
def test_any_text_gets_a_verdict_never_an_exception(answer, reference, prompt):
    assert judge_choice(answer, reference, prompt).status in ("correct", "wrong", "no_answer", "error")
