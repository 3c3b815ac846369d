"""The one <think> rule: split at the first </think>, and the format check, on chains with zero,
one and several tags (tables of (input, expected))."""

import pytest

from factory.think import FORMAT_PROBLEMS, format_ok, format_problem, split_completion

GOOD = "7+5=12\n12+9=21\n</think>\n\n\\boxed{21}"


@pytest.mark.parametrize(("completion", "reasoning", "answer"), [
    # zero tags: the chain never closed
    ("still thinking and cut", "still thinking and cut", None),
    ("", "", None),
    # one closing tag (the forced opening tag is in the prompt)
    (GOOD, "7+5=12\n12+9=21", "\\boxed{21}"),
    ("</think>", "", ""),
    # the model wrote its own opening tag too
    ("<think>\nplan\n</think>\nok", "plan", "ok"),
    ("  <think>plan</think>ok", "plan", "ok"),
    # several tags: the first </think> ends the reasoning, the rest belongs to the answer
    ("a</think>b</think>c", "a", "b</think>c"),
    ("quote: </think> real end</think>\\boxed{2}", "quote:", "real end</think>\\boxed{2}"),
    ("<think>a<think>b</think>c", "a<think>b", "c"),
])
def test_split_completion_ends_the_reasoning_at_the_first_close_tag(completion, reasoning, answer):
    assert split_completion(completion) == (reasoning, answer)


@pytest.mark.parametrize(("completion", "prefilled", "expected"), [
    (GOOD, True, None),
    ("<think>\n" + GOOD, True, None),
    ("<think>\n" + GOOD, False, None),
    (GOOD, False, "unopened_think"),
    ("7+5=12\n12+9=21", True, "unclosed_think"),
    ("a\n</think>\nb</think>", True, "bad_think_format"),
    ("a\n<think>b\n</think>\nc", True, "bad_think_format"),
    ("a\n</think>\n<think>c", True, "bad_think_format"),
    ("  \n</think>\n\\boxed{1}", True, "empty_reasoning"),
    ("a\n</think>\n  \n", True, "missing_answer"),
])
def test_format_problem_names_the_first_problem(completion, prefilled, expected):
    assert format_problem(completion, prefilled) == expected
    assert expected is None or expected in FORMAT_PROBLEMS


@pytest.mark.parametrize(("completion", "expected"), [(GOOD, True), ("a</think>b</think>c", False), (None, False)])
def test_format_ok_is_the_absence_of_a_format_problem(completion, expected):
    assert format_ok(completion) is expected


@pytest.mark.parametrize("completion", [GOOD, "a</think>b</think>\\boxed{3}", "no tag at all \\boxed{4}"])
def test_scoring_and_storing_see_the_same_answer(completion):
    """What the verifier scores (the answer column generation writes) is what the dataset stores."""
    from factory.think import split_completion as stored_split
    from factory.stages.generate import udf

    assert udf.split_completion is stored_split
    assert split_completion(completion)[1] == stored_split(completion)[1]
