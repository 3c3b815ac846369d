"""Math verifier: equivalence table, GSM8K ground truth, time limit and error statuses."""

import json
import threading

import pytest

from factory.verifiers.math_verifier import MathVerifier, judge_math


@pytest.fixture(scope="module")
def math_verifier():
    with MathVerifier(timeout_s=2.0) as verifier:
        yield verifier


@pytest.fixture(scope="module")
def gsm8k_references(shared_data):
    with open(shared_data / "gsm8k" / "test.jsonl") as handle:
        return [json.loads(line)["answer"] for line in handle]


@pytest.mark.parametrize("answer, reference, expected", [
    ("\\boxed{72}", "72", "correct"),
    ("\\boxed{72.0}", "#### 72", "correct"),
    ("\\boxed{\\frac{1}{2}}", "0.5", "correct"),
    ("\\boxed{\\dfrac{\\sqrt{3}}{2}}", "\\frac{\\sqrt3}{2}", "correct"),
    ("\\boxed{1000}", "1,000", "correct"),
    ("\\boxed{\\$18}", "18", "correct"),
    ("\\boxed{x = 5}", "5", "correct"),
    ("#### 7", "7", "correct"),
    ("\\boxed{73}", "72", "wrong"),
    ("\\boxed{-72}", "72", "wrong"),
    ("\\boxed{banana}", "72", "wrong"),
    ("the answer is 72", "72", "no_answer"),
    (None, "72", "no_answer"),
    ("\\boxed{72}", None, "error"),
    ("\\boxed{72}", "  ", "error"),
])
def test_math_verdicts(math_verifier, answer, reference, expected):
    assert math_verifier(answer, reference).status == expected


def test_every_gsm8k_reference_verifies_against_itself(math_verifier, gsm8k_references):
    statuses = {math_verifier(reference, reference).status for reference in gsm8k_references}
    assert statuses == {"correct"}


def test_perturbed_gsm8k_numbers_are_wrong(math_verifier, gsm8k_references):
    for reference in gsm8k_references[:200]:
        value = reference.rsplit("####", 1)[1].strip().replace(",", "")
        perturbed = f"\\boxed{{{int(float(value)) + 1}}}"
        assert math_verifier(perturbed, reference).status == "wrong", reference


def test_hanging_expression_times_out_and_worker_recovers():
    with MathVerifier(timeout_s=1.0) as verifier:
        assert verifier("\\boxed{9^{9^{9^{9}}}}", "72").status == "timeout"
        assert verifier("\\boxed{72}", "72").status == "correct"


def test_verifier_works_off_the_main_thread(math_verifier):
    results = []
    thread = threading.Thread(target=lambda: results.append(math_verifier("\\boxed{3}", "3")))
    thread.start()
    thread.join()
    assert results[0].status == "correct"


def test_pure_judgement_works_off_the_main_thread():
    results = []
    thread = threading.Thread(target=lambda: results.append(judge_math("\\boxed{2}", "2")))
    thread.start()
    thread.join()
    assert results[0].status == "correct"


def test_worker_dying_mid_sample_is_error_not_wrong():
    with MathVerifier(timeout_s=30.0) as verifier:
        verifier("\\boxed{1}", "1")
        killer = threading.Timer(0.5, verifier._proc.kill)  # fault injection: the worker dies mid-sample
        killer.start()
        assert verifier("\\boxed{9^{9^{9^{9}}}}", "1").status == "error"
        killer.join()


def test_dead_worker_is_replaced_before_the_next_sample():
    with MathVerifier(timeout_s=5.0) as verifier:
        verifier("\\boxed{1}", "1")
        verifier._proc.kill()  # fault injection: the worker dies between samples
        verifier._proc.wait()
        assert verifier("\\boxed{1}", "1").status == "correct"


def test_verdict_names_verifier_and_version(math_verifier):
    result = math_verifier("\\boxed{1}", "1")
    assert result.verifier_id.startswith("math@1+math-verify-")


class _DiesBeforeTheRequest(MathVerifier):
    """Fault injection: the worker dies after the liveness check and before the request is written."""

    def _ensure_worker(self):
        proc = super()._ensure_worker()
        proc.kill()
        proc.wait()
        return proc


def test_worker_dying_before_the_request_is_error_not_an_exception():
    with _DiesBeforeTheRequest(timeout_s=5.0) as verifier:
        assert verifier("\\boxed{1}", "1").status == "error"


def test_a_batch_judged_ahead_gives_the_one_at_a_time_verdicts(math_verifier):
    pairs = [("\\boxed{72}", "72"), ("\\boxed{73}", "72"), ("no answer", "72"), ("\\boxed{0.5}", "\\frac12"),
             ("\\boxed{72}", None)] * 40
    assert [v.status for v in math_verifier.judge_many(pairs)] == [math_verifier(*p).status for p in pairs]


def test_a_hang_inside_a_batch_times_out_that_sample_only_and_the_rest_are_judged():
    pairs = [("\\boxed{72}", "72"), ("\\boxed{9^{9^{9^{9}}}}", "72"), ("\\boxed{73}", "72"), ("\\boxed{72}", "72")]
    with MathVerifier(timeout_s=1.0) as verifier:
        assert [v.status for v in verifier.judge_many(pairs)] == ["correct", "timeout", "wrong", "correct"]


def test_requests_larger_than_the_pipe_budget_are_still_judged(math_verifier):
    from factory.verifiers.math_verifier import PIPELINE_BYTES

    # only the extracted answer is sent, but the reference goes whole: a long worked solution fills the budget
    long_reference = "word " * (PIPELINE_BYTES // 2) + "#### 72"
    pairs = [("\\boxed{72}", long_reference), ("\\boxed{71}", long_reference), ("so \\boxed{72}", long_reference)]
    assert [v.status for v in math_verifier.judge_many(pairs)] == ["correct", "wrong", "correct"]
