"""Operations, for real: a local Ray head (`ray start --head`, loopback only) runs the refresh pipeline
submitted through the Jobs API; a second refresh with a grown and changed prompt file regenerates only
what changed; the same schedule slot submitted twice runs once. The head is stopped at the end."""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from ray_processes import NO_DRAIN_ENV, stop_ray_node

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ray_head(tmp_path_factory):
    """A Ray head on 127.0.0.1 started with `ray start --block`, so stopping it stops only its processes."""
    port, dash, agent = _free_port(), _free_port(), _free_port()
    log_path = tmp_path_factory.mktemp("ray-head") / "head.log"
    log = open(log_path, "w")
    # Token authentication on, as on real clusters (cluster/): the head and this client share a fresh token.
    auth = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}
    os.environ.update(auth)
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}", "RAY_USAGE_STATS_ENABLED": "0", **NO_DRAIN_ENV}
    env.pop("RAY_ADDRESS", None)
    head = subprocess.Popen(
        [str(BIN / "ray"), "start", "--head", "--block", "--node-ip-address=127.0.0.1", f"--port={port}",
         "--dashboard-host=127.0.0.1", f"--dashboard-port={dash}", f"--dashboard-agent-listen-port={agent}",
         "--num-cpus=2", "--disable-usage-stats"],
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 300
    while True:
        try:  # Ray may move the dashboard off a busy port: take the address it prints
            address = re.search(r"RAY_API_SERVER_ADDRESS='(http://127\.0\.0\.1:\d+)'", log_path.read_text()).group(1)
            if _factory("jobs", "--address", address).returncode == 0:
                break
            raise ConnectionError(address)
        except Exception:
            if time.monotonic() > deadline or head.poll() is not None:
                os.killpg(head.pid, signal.SIGKILL)
                pytest.fail(f"ray head did not come up:\n{log_path.read_text()[-3000:]}")
            time.sleep(2)
    yield address
    for key in auth:
        os.environ.pop(key, None)
    stop_ray_node(head)
    log.close()


def _config(work: Path, prompts: Path) -> Path:
    cfg = yaml.safe_load((REPO / "configs" / "demo.yaml").read_text())
    cfg["run"] = {"name": "refresh-test", "work_dir": str(work / "runs"), "seed": 0}
    cfg["prompts"] = {"on_bad_row": "fail", "sources": [
        {"name": "file", "kind": "jsonl", "path": str(prompts), "task": "math", "id_field": "id",
         "prompt_field": "question", "reference_field": "answer"}]}
    cfg["generation"]["sampling"]["n"] = 2
    cfg["reward"] = {"enabled": False}
    cfg["filter"]["rejection"] = {"require_correct": False}
    cfg["store"]["root"] = str(work / "datasets")
    cfg.pop("train")
    cfg["eval"] = {"enabled": False}
    path = work / "refresh.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _write_prompts(path: Path, problems: list[dict]) -> None:
    path.write_text("".join(json.dumps({"id": p["prompt_id"], "question": p["prompt"], "answer": p["reference"]}) + "\n"
                            for p in problems))


def _factory(*args: str) -> subprocess.CompletedProcess:
    """The `factory` CLI in a fresh process: it reads the cluster's auth token from the environment, as a
    scheduler's submitter would (a process that already ran Ray keeps its first auth state)."""
    return subprocess.run([sys.executable, "-m", "factory.cli", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=1200)


def _submit_and_wait(address: str, config: Path, slot: str) -> tuple[str, bool]:
    out = _factory("refresh", str(config), "--submit", "--slot", slot, "--address", address)
    assert out.returncode == 0, out.stderr[-3000:]
    submitted = json.loads(out.stdout.strip().splitlines()[-1])
    waited = _factory("jobs", "--address", address, "--wait", submitted["submission_id"], "--timeout", "900")
    assert waited.returncode == 0, waited.stdout[-2000:] + waited.stderr[-3000:]
    return submitted["submission_id"], submitted["submitted"]


# Run in its own pytest process (`make test` does), with no session instance of this process beside the head.
# The head's agent gets a free port: at Ray's default (52365) it fails to bind whenever another Ray instance
# on the machine has it, and the head then never accepts a job ("No available agent to submit job").
@pytest.mark.isolated
def test_refresh_reuses_unchanged_prompts_and_runs_each_slot_once(ray_head, tmp_path, tiny_models):
    from factory import synthetic
    from factory.store import SnapshotStore

    problems = synthetic.make_problems(30, seed=5, split="train")
    prompts = tmp_path / "prompts.jsonl"
    _write_prompts(prompts, problems[:20])
    config = _config(tmp_path, prompts)

    first, new = _submit_and_wait(ray_head, config, "slot-1")
    assert new
    store = SnapshotStore(str(tmp_path / "datasets"), "demo-arith")
    v1 = store.latest()
    assert v1.manifest["refresh"]["prompts_new"] == 20

    again, new = _submit_and_wait(ray_head, config, "slot-1")  # the scheduler fires twice for one slot
    assert again == first and not new
    assert store.versions() == [v1.version]

    changed = dict(problems[0], prompt=problems[0]["prompt"].replace("What", "Compute"))
    _write_prompts(prompts, [changed] + problems[1:25])  # one changed, 19 unchanged, 5 new
    _submit_and_wait(ray_head, config, "slot-2")
    v2 = store.latest()
    refresh = v2.manifest["refresh"]
    assert v2.manifest["parent"] == v1.version
    assert (refresh["prompts_new"], refresh["prompts_reused"]) == (6, 19)
    kept_v1 = {r["sample_id"] for r in v1.read(columns=["sample_id"]).to_pylist()}
    rows_v2 = v2.read(columns=["sample_id", "prompt_id"]).to_pylist()
    carried = {r["sample_id"] for r in rows_v2 if r["prompt_id"] != problems[0]["prompt_id"]} & kept_v1
    assert refresh["rows_carried"] == len(carried)
    assert problems[0]["prompt_id"] not in {r["prompt_id"] for r in rows_v2 if r["sample_id"] in kept_v1}
    assert len({r["sample_id"] for r in rows_v2}) == len(rows_v2)
