"""The verify stage on local Ray with the service backend (the real sandbox service process on 127.0.0.1,
started as root like its privileged pod), and its circuit breaker: a run whose sandbox fails stops with
an error naming the share and the window, instead of turning every code sample into a dropped row."""

import os
import socket
import sys

import pyarrow as pa
import pytest

from config_helpers import make_config
from factory.pipeline import run_small
from factory.schema import SAMPLE_SCHEMA, conform
from factory.stages.verify import VerifyConfig, VerifyStage

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "unit", "verifiers"))
from sandbox_servers import sandbox_service  # noqa: E402

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root: the sandbox service switches uids")
CHECK = "def check(fn):\n    assert fn(2) == 4"
CODE = [  # candidate -> verdict
    ("def double(x):\n    return 2 * x", "correct"),
    ("def double(x):\n    return x", "wrong"),
    ("def double(x):\n    while True:\n        pass", "timeout"),
    ("import socket\nsocket.create_connection(('127.0.0.1', 22), 1)\ndef double(x):\n    return 2 * x", "wrong"),
]


def _code_table(candidates: list[str]) -> pa.Table:
    records = [{
        "prompt_id": f"p{i}", "task": "code", "prompt": "q", "reference": None, "tests": CHECK, "entry_point": "double",
        "source": "t", "source_row": i + 1, "sample_index": 0, "sample_id": f"p{i}:k:0", "gen_key": "k",
        "completion": f"ok</think>```python\n{candidate}\n```", "answer": None, "gen_status": "ok",
    } for i, candidate in enumerate(candidates)]
    return conform(pa.Table.from_pylist(records), SAMPLE_SCHEMA)


def test_verify_stage_with_the_service_backend_scores_code_rows(ray_local):
    with sandbox_service(slots=2) as url:
        cfg = make_config(verify=VerifyConfig(batch_size=2, sandbox_backend="service", sandbox_service={"url": url},
                                              code_limits={"timeout_s": 3, "cpu_s": 2}))
        table, records = run_small([VerifyStage], cfg, _code_table([c for c, _ in CODE]))
    table = table.sort_by("source_row")
    assert table["verdict"].to_pylist() == [verdict for _, verdict in CODE]
    assert records[0].stats == {"sandbox_backend": "service", "sandbox_runs": len(CODE), "sandbox_errors": 0,
                                "circuit": "closed"}


def test_unreachable_service_stops_the_stage_naming_the_share_and_the_window(ray_local):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{probe.getsockname()[1]}"  # nothing listens there
    cfg = make_config(verify=VerifyConfig(
        batch_size=2, sandbox_backend="service", sandbox_service={"url": url, "retries": 0},
        circuit_breaker={"window": 4, "min_runs": 4}))
    with pytest.raises(Exception) as failure:
        run_small([VerifyStage], cfg, _code_table([CODE[0][0]] * 8))
    message = str(failure.value)
    assert "SandboxCircuitOpen" in message or "sandbox_error" in message
    assert "4 of the last 4 sandbox runs (100.0%) were sandbox_error" in message and "window 4 runs" in message
    assert url in message
