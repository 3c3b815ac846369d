"""Rule-based verifiers: pure ``(sample, reference) -> VerdictResult`` judgements for math (math-verify
with a per-sample time limit), multiple choice (the chosen option against options parsed from the
prompt) and code (tests run in a sandboxed subprocess); the format check is :mod:`factory.think`'s.

Entry points: ``MathVerifier`` / ``judge_math``, ``judge_choice``, ``verify_code`` / ``run_sandboxed``.
Importing this package imports only the standard library (math-verify loads on first use).
"""

from factory.verifiers.answers import extract_code, extract_final_answer
from factory.verifiers.choice import judge_choice
from factory.verifiers.code_verifier import build_program, verify_code
from factory.verifiers.math_verifier import MathVerifier, judge_math
from factory.verifiers.sandbox import SandboxLimits, SandboxResult, resolve_mode, run_sandboxed
from factory.verifiers.verdict import VERDICT_STATUSES, VerdictResult

__all__ = [
    "VERDICT_STATUSES", "MathVerifier", "SandboxLimits", "SandboxResult", "VerdictResult", "build_program",
    "extract_code", "extract_final_answer", "judge_choice", "judge_math", "resolve_mode", "run_sandboxed",
    "verify_code",
]
