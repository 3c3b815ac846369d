"""GRPO rewards from the factory's verifiers: scores for judged completions, None (excluded, counted) for
completions whose verification failed for infrastructure reasons -- here a math worker killed mid-request."""

from __future__ import annotations

import pytest

from factory.rl.config import RewardsConfig
from factory.rl.rewards import VerifiedRewards
from factory.stages.verify import VerifyConfig
from factory.verifiers.math_verifier import MathVerifier
from verifier_faults import kill_before_reply

RIGHT = "3+4=7\n</think>\n\n\\boxed{7}"
WRONG = "3+4=8\n</think>\n\n\\boxed{8}"
CUT = "3+4=7\n3+4=7\n3+4"  # a chain cut at the rollout length: no answer


class KilledWorker(MathVerifier):
    """Fault injection: the real child process is killed while it judges (after the request reached it),
    for completions whose text contains one of ``doomed`` -- a worker crash mid-judgement."""

    doomed: set[str] = set()

    def _reply(self, proc, pair):
        if any(text in (pair[0] or "") for text in self.doomed):
            kill_before_reply(self, proc)
        return super()._reply(proc, pair)


def _kwargs(n: int, log: list | None = None) -> dict:
    out = {"task": ["math"] * n, "problem": ["What is 3+4?"] * n, "reference": ["7"] * n, "tests": [None] * n,
           "entry_point": [None] * n}
    if log is not None:
        out["log_metric"] = lambda name, value: log.append((name, value))
    return out


@pytest.fixture
def rewards():
    return VerifiedRewards(RewardsConfig(correctness=1.0, format=0.5), VerifyConfig())


def _call(board, completions, log=None):
    functions, _ = board.functions()
    return {f.__name__: f(prompts=[""] * len(completions), completions=completions, **_kwargs(len(completions), log))
            for f in functions}


def test_correct_scores_one_and_wrong_or_cut_chains_score_zero(rewards):
    scores = _call(rewards, [RIGHT, WRONG, CUT])
    assert scores["correctness"] == [1.0, 0.0, 0.0]


def test_format_reward_follows_the_think_rule(rewards):
    scores = _call(rewards, [RIGHT, CUT])
    assert scores["format"] == [1.0, 0.0]


def test_reward_functions_carry_their_weights_in_order(rewards):
    functions, weights = rewards.functions()
    assert [f.__name__ for f in functions] == ["correctness", "format"] and weights == [1.0, 0.5]


def test_a_batch_is_verified_once_for_all_reward_functions(rewards):
    _call(rewards, [RIGHT, WRONG])
    assert rewards.judged == 2


def test_a_killed_verifier_worker_excludes_the_sample_from_every_function(rewards, monkeypatch):
    monkeypatch.setattr("factory.verifiers.MathVerifier", KilledWorker)
    doomed = RIGHT.replace("7", "7 ")  # a correct answer the outage hits
    monkeypatch.setattr(KilledWorker, "doomed", {doomed.split("</think>")[1].strip()})
    scores = _call(rewards, [RIGHT, doomed, WRONG])
    assert scores["correctness"] == [1.0, None, 0.0]
    assert scores["format"] == [1.0, None, 1.0]


def test_exclusions_are_counted_by_verdict_and_logged_per_batch(rewards, monkeypatch):
    monkeypatch.setattr("factory.verifiers.MathVerifier", KilledWorker)
    monkeypatch.setattr(KilledWorker, "doomed", {"\\boxed{8}"})
    log: list = []
    _call(rewards, [RIGHT, WRONG, WRONG, RIGHT], log)
    assert rewards.excluded == {"error": 2} and rewards.judged == 4
    assert log == [("verification/excluded_frac", 0.5)]


def test_a_verifier_timeout_is_excluded_not_scored():
    board = VerifiedRewards(RewardsConfig(), VerifyConfig(math_timeout_s=1e-6))
    scores = _call(board, [RIGHT, WRONG])
    assert scores["correctness"] == [None, None] and board.excluded == {"timeout": 2}


CODE_OK = "Write add.\n</think>\n\n```python\ndef add(a, b):\n    return a + b\n```"
CODE_BAD = "Write add.\n</think>\n\n```python\ndef add(a, b):\n    return a - b\n```"


def test_code_completions_are_scored_by_their_tests_in_the_sandbox():
    board = VerifiedRewards(RewardsConfig(), VerifyConfig())
    correctness, = board.functions()[0]
    scores = correctness(prompts=["", ""], completions=[CODE_OK, CODE_BAD], task=["code", "code"],
                         problem=["Write add(a, b)."] * 2, reference=[None, None],
                         tests=["def check(f):\n    assert f(2, 3) == 5\n"] * 2, entry_point=["add", "add"])
    assert scores == [1.0, 0.0]


def test_the_reward_model_scores_what_the_verifiers_judged(tiny_models, monkeypatch):
    from factory.stages.reward import RewardConfig

    rm = RewardConfig(enabled=True, model="tiny:reward", dtype="float32", max_length=512, max_tokens_per_batch=4096,
                      num_gpus_per_actor=0)
    board = VerifiedRewards(RewardsConfig(correctness=1.0, reward_model=0.5), VerifyConfig(), reward_cfg=rm)
    monkeypatch.setattr("factory.verifiers.MathVerifier", KilledWorker)
    monkeypatch.setattr(KilledWorker, "doomed", {"\\boxed{8}"})
    scores = _call(board, [RIGHT, WRONG])
    assert isinstance(scores["reward_model"][0], float) and scores["reward_model"][1] is None  # excluded everywhere
