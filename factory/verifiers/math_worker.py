"""Child process behind ``MathVerifier``: reads JSON requests ``{"predicted", "reference"}`` (the answer
already extracted from the response, or null) one per line on stdin, writes one JSON ``VerdictResult``
per line on stdout, until stdin closes. Writes ``ready`` once imports are done. Started by
``MathVerifier`` only; the parent enforces the time limit by killing this process."""

from __future__ import annotations

import dataclasses
import json
import logging
import sys

from factory.verifiers.math_verifier import judge_extracted


def main() -> None:
    logging.getLogger("math_verify").setLevel(logging.ERROR)  # silences "timeout disabled" warnings
    out = sys.stdout
    sys.stdout = sys.stderr  # stray prints from libraries must not corrupt the protocol
    judge_extracted("1", "1")  # warm-up: imports math-verify/sympy before the parent's clock runs
    out.write("ready\n")
    out.flush()
    for line in sys.stdin:
        request = json.loads(line)
        result = judge_extracted(request["predicted"], request["reference"])
        out.write(json.dumps(dataclasses.asdict(result)) + "\n")
        out.flush()


if __name__ == "__main__":
    main()
