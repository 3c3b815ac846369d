"""The verify stage on local Ray: verdict columns per task type, unscored failed generations, and the
sandbox runs counted in the stage's stats (local backend; the service backend: test_verify_service.py)."""

import pyarrow as pa

from factory.schema import SAMPLE_SCHEMA, conform
from factory.verifiers.sandbox import SandboxLimits
from config_helpers import make_config
from factory.pipeline import run_small
from factory.stages.verify import VerifyConfig, VerifyStage

CHECK = "def check(fn):\n    assert fn(2) == 4"
ROWS = [  # (task, completion, reference, tests, entry_point, gen_status) -> verdict, format_ok
    (("math", "add them</think>\\boxed{4}", "4", None, None, "ok"), ("correct", True)),
    (("math", "hmm</think>\\boxed{5}", "#### 4", None, None, "ok"), ("wrong", True)),
    (("logic", "no closing tag, \\boxed{4}", "4", None, None, "ok"), ("no_answer", False)),
    (("code", "ok</think>```python\ndef double(x):\n    return 2 * x\n```", None, CHECK, "double", "ok"),
     ("correct", True)),
    (("code", "ok</think>```python\ndef double(x):\n    return x\n```", None, CHECK, "double", "ok"), ("wrong", True)),
    (("code", "ok</think>```python\nimport socket\nsocket.create_connection(('1.1.1.1', 53), 1)\n```", None, CHECK,
      "double", "ok"), ("wrong", True)),
    (("math", None, "4", None, None, "engine_error"), (None, None)),
]


def _sample_table():
    records = []
    for index, ((task, completion, reference, tests, entry_point, status), _) in enumerate(ROWS):
        answer = completion.rpartition("</think>")[2] if completion and "</think>" in completion else None
        records.append({
            "prompt_id": f"p{index}", "task": task, "prompt": "q", "reference": reference, "tests": tests,
            "entry_point": entry_point, "source": "t", "source_row": index + 1, "sample_index": 0,
            "sample_id": f"p{index}:k:0", "gen_key": "k", "completion": completion, "answer": answer,
            "gen_status": status,
        })
    return conform(pa.Table.from_pylist(records), SAMPLE_SCHEMA)


def test_verify_stage_scores_each_row_by_its_task(ray_local):
    cfg = make_config(verify=VerifyConfig(batch_size=4, code_limits=SandboxLimits(timeout_s=5)))
    table, records = run_small([VerifyStage], cfg, _sample_table())
    table = table.sort_by("source_row")
    assert table.num_rows == len(ROWS)
    got = list(zip(table["verdict"].to_pylist(), table["format_ok"].to_pylist()))
    assert got == [expected for _, expected in ROWS]
    verifiers = table["verifier"].to_pylist()
    assert verifiers[0].startswith("math@") and verifiers[3] == "code@1" and verifiers[-1] is None
    assert records[0].stats == {"sandbox_backend": "local", "sandbox_runs": 3, "sandbox_errors": 0, "circuit": "closed"}


LOGIC = "Which follows?\nA. All cats fly.\nB. Some cats sleep.\nC. No cat sleeps.\nD. Cats are fish."


def test_multiple_choice_logic_rows_are_judged_by_the_chosen_option(ray_local):
    rows = [{"prompt_id": f"l{i}", "task": "logic", "prompt": LOGIC, "reference": "B", "source": "t", "source_row": i,
             "sample_index": 0, "sample_id": f"l{i}:k:0", "gen_key": "k", "completion": completion,
             "answer": completion.split("</think>")[1], "gen_status": "ok"}
            for i, completion in enumerate(["B is the one</think>The answer is (B).",
                                            "maybe B</think>\\boxed{C}", "Some cats sleep</think>Answer: D"])]
    table, _ = run_small([VerifyStage], make_config(), conform(pa.Table.from_pylist(rows), SAMPLE_SCHEMA))
    table = table.sort_by("source_row")
    assert table["verdict"].to_pylist() == ["correct", "wrong", "wrong"]
    assert {v.split("@")[0] for v in table["verifier"].to_pylist()} == {"choice"}
