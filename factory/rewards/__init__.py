"""Rule-based verifiers: pure ``(sample, reference) -> VerdictResult`` judgements for math (math-verify
with a per-sample time limit), code (tests run in a sandboxed subprocess) and response format.

Entry points: ``MathVerifier`` / ``judge_math``, ``verify_code`` / ``run_sandboxed``, ``format_ok``.
Importing this package imports only the standard library (math-verify loads on first use).
"""

from factory.rewards.answers import extract_code, extract_final_answer, format_ok, split_answer
from factory.rewards.code_verifier import build_program, verify_code
from factory.rewards.math_verifier import MathVerifier, judge_math
from factory.rewards.sandbox import SandboxLimits, SandboxResult, resolve_mode, run_sandboxed
from factory.rewards.verdict import VERDICT_STATUSES, VerdictResult

__all__ = [
    "VERDICT_STATUSES", "MathVerifier", "SandboxLimits", "SandboxResult", "VerdictResult", "build_program",
    "extract_code", "extract_final_answer", "format_ok", "judge_math", "resolve_mode", "run_sandboxed",
    "split_answer", "verify_code",
]
