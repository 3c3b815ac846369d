"""Code verifier: run the candidate against the task's tests in the sandbox (``sandbox.py``).

Program layout (HumanEval convention): ``prompt`` (only when it is a code stub: valid Python made of
imports and definitions; an instruction-style prompt is skipped) + candidate + ``tests`` + ``check(entry_point)`` (only
when an entry point is given). The candidate is the last fenced python block of the answer, else the
whole answer. A prompt-only stub whose body is just a docstring is valid Python, so a candidate that
restates the whole function simply redefines it.

Status mapping (the sandbox status is kept in ``code_status``): pass -> ``correct``; fail -> ``wrong``;
timeout -> ``timeout``; memory -> ``wrong`` (the program exceeded the task's memory budget);
sandbox_error -> ``error``; no code in the answer -> ``no_answer``; no tests -> ``error``.
``prepare_program`` and ``verdict_of_run`` are the two halves around the run, so the verify stage can
send programs to either sandbox backend (local subprocesses or the sandbox service).
"""

from __future__ import annotations

import ast

from factory.verifiers.answers import extract_code
from factory.verifiers.sandbox import SandboxLimits, SandboxResult, run_sandboxed
from factory.verifiers.verdict import VerdictResult

NAME = "code"
VERSION = "1"
_VERDICT_OF = {"pass": "correct", "fail": "wrong", "timeout": "timeout", "memory": "wrong",
               "sandbox_error": "error"}


_DEFINITIONS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
_DECLARATIONS = _DEFINITIONS + (ast.Import, ast.ImportFrom, ast.Assign, ast.AnnAssign)


def _is_code_stub(text: str) -> bool:
    """True for a HumanEval-style stub: valid Python of imports/assignments/definitions (and string
    literals), with at least one function or class. Prose that happens to parse ("q") is not."""
    try:
        module = ast.parse(text)
    except (SyntaxError, ValueError):
        return False
    declarative = all(isinstance(node, _DECLARATIONS) or (isinstance(node, ast.Expr) and isinstance(
        node.value, ast.Constant) and isinstance(node.value.value, str)) for node in module.body)
    return declarative and any(isinstance(node, _DEFINITIONS) for node in module.body)


def build_program(candidate: str, tests: str, entry_point: str | None, prompt: str | None = None) -> str:
    """The source run in the sandbox (see module doc)."""
    parts = [prompt] if prompt and _is_code_stub(prompt) else []
    parts += [candidate, tests]
    if entry_point:
        parts.append(f"check({entry_point})")
    return "\n\n".join(part.rstrip() for part in parts) + "\n"


def prepare_program(answer: str | None, tests: str | None, entry_point: str | None = None,
                    prompt: str | None = None) -> str | VerdictResult:
    """The program to run for one answer, or the verdict when there is nothing to run (no tests, no code)."""
    if not tests or not tests.strip():
        return VerdictResult("error", NAME, VERSION, "task has no tests")
    candidate = extract_code(answer)
    if candidate is None:
        return VerdictResult("no_answer", NAME, VERSION, "no code in the answer")
    return build_program(candidate, tests, entry_point, prompt)


def verdict_of_run(result: SandboxResult) -> VerdictResult:
    """The verdict of one sandboxed run, whichever backend ran it (status mapping: module doc)."""
    return VerdictResult(_VERDICT_OF[result.status], NAME, VERSION, result.detail[:500], code_status=result.status)


def verify_code(answer: str | None, tests: str | None, entry_point: str | None = None,
                prompt: str | None = None, limits: SandboxLimits = SandboxLimits(), mode: str = "auto",
                python: str | None = None, uid_base: int = 61000, slot: int = 0) -> VerdictResult:
    """Judge one answer by running it with its tests in the local sandbox (see ``run_sandboxed``)."""
    program = prepare_program(answer, tests, entry_point, prompt)
    if isinstance(program, VerdictResult):
        return program
    return verdict_of_run(run_sandboxed(program, limits, mode, python, uid_base, slot))
