"""Code verifier: HumanEval ground truth (canonical solutions pass, mutants fail) and status mapping."""

import gzip
import json
import queue
from concurrent.futures import ThreadPoolExecutor

import pytest

from factory.verifiers.code_verifier import build_program, verify_code

MUTANT_SAMPLE = 20


@pytest.fixture(scope="module")
def humaneval(humaneval_file):
    with gzip.open(humaneval_file, "rt") as handle:
        return [json.loads(line) for line in handle]


def _judge_all(tasks, answer_of):
    """Verdicts for every task, two sandboxes at a time, each holding its own uid slot."""
    free_slots = queue.Queue()
    for slot in (0, 1):
        free_slots.put(slot)

    def judge(task):
        slot = free_slots.get()
        try:
            return verify_code(answer_of(task), task["test"], task["entry_point"], prompt=task["prompt"], slot=slot)
        finally:
            free_slots.put(slot)

    with ThreadPoolExecutor(max_workers=2) as pool:
        return list(pool.map(judge, tasks))


def _swap_operator(source):
    for old, new in [(" < ", " >= "), (" > ", " <= "), (" == ", " != "), (" + ", " - ")]:
        if old in source:
            return source.replace(old, new, 1)
    return None


def test_all_humaneval_canonical_solutions_pass(humaneval):
    verdicts = _judge_all(humaneval, lambda task: task["canonical_solution"])
    failures = [(task["task_id"], v.detail) for task, v in zip(humaneval, verdicts) if v.status != "correct"]
    assert failures == []


def test_canonical_solution_in_a_fenced_block_passes(humaneval):
    task = humaneval[0]
    answer = f"Here you go:\n```python\n{task['prompt']}{task['canonical_solution']}```\nDone."
    assert verify_code(answer, task["test"], task["entry_point"], prompt=task["prompt"]).status == "correct"


def test_returning_none_fails_sampled_tasks(humaneval):
    verdicts = _judge_all(humaneval[:MUTANT_SAMPLE], lambda task: "    return None\n")
    assert {v.code_status for v in verdicts} == {"fail"}


def test_swapped_operator_fails_sampled_tasks(humaneval):
    mutable = [task for task in humaneval if _swap_operator(task["canonical_solution"])][:MUTANT_SAMPLE]
    verdicts = _judge_all(mutable, lambda task: _swap_operator(task["canonical_solution"]))
    assert {v.status for v in verdicts} == {"wrong"}


@pytest.mark.slow
def test_every_humaneval_mutant_fails(humaneval):
    verdicts = _judge_all(humaneval, lambda task: "    return None\n")
    mutable = [task for task in humaneval if _swap_operator(task["canonical_solution"])]
    verdicts += _judge_all(mutable, lambda task: _swap_operator(task["canonical_solution"]))
    assert {v.status for v in verdicts} == {"wrong"}


@pytest.mark.parametrize("answer, tests, expected, code_status", [
    ("def f():\n    return 1", "def check(fn):\n    assert fn() == 1", "correct", "pass"),
    ("def f():\n    return 2", "def check(fn):\n    assert fn() == 1", "wrong", "fail"),
    ("def f():\n    while True: pass", "def check(fn):\n    fn()", "timeout", "timeout"),
    ("def f():\n    return bytearray(1 << 30)", "def check(fn):\n    fn()", "wrong", "memory"),
    ("", "def check(fn):\n    pass", "no_answer", None),
    ("def f():\n    return 1", "", "error", None),
])
def test_status_mapping(answer, tests, expected, code_status):
    from factory.verifiers.sandbox import SandboxLimits

    result = verify_code(answer, tests, "f", limits=SandboxLimits(timeout_s=3, cpu_s=2))
    assert (result.status, result.code_status) == (expected, code_status)


@pytest.mark.parametrize("prompt, expected_prefix", [
    ("def f(x):\n    \"\"\"doc\"\"\"\n", "def f(x):"),
    ("Write a function f that returns 1.", "def f():"),
    ("q", "def f():"),
    (None, "def f():"),
])
def test_prompt_is_prefixed_only_when_it_is_python(prompt, expected_prefix):
    assert build_program("def f():\n    return 1", "def check(fn): pass", "f", prompt).startswith(expected_prefix)
