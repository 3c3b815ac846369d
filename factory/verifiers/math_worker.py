"""Child process behind ``MathVerifier``: reads JSON requests ``{"answer", "reference"}`` one per
line on stdin, writes one JSON ``VerdictResult`` per line on stdout, until stdin closes.
Writes ``ready`` once imports are done. Started by ``MathVerifier`` only; the parent enforces the
time limit by killing this process."""

from __future__ import annotations

import dataclasses
import json
import logging
import sys

from factory.verifiers.math_verifier import judge_math


def main() -> None:
    logging.getLogger("math_verify").setLevel(logging.ERROR)  # silences "timeout disabled" warnings
    out = sys.stdout
    sys.stdout = sys.stderr  # stray prints from libraries must not corrupt the protocol
    judge_math("\\boxed{1}", "1")  # warm-up: imports math-verify/sympy before the parent's clock runs
    out.write("ready\n")
    out.flush()
    for line in sys.stdin:
        request = json.loads(line)
        result = judge_math(request["answer"], request["reference"])
        out.write(json.dumps(dataclasses.asdict(result)) + "\n")
        out.flush()


if __name__ == "__main__":
    main()
