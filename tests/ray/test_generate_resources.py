"""Breaker: GPU actors got no GPU on an autoscaling cluster. Recreated for real: a Ray cluster on
127.0.0.1 whose head has no GPU (``ray start --head --num-gpus 0``, like the launcher's and KubeRay's
CPU-only head) and whose GPU worker joins only after the generation stage has started (as a GPU node
scaled up from ``min_workers: 0`` does). The request comes from the config (``device: gpu``): the
actor must wait for the GPU, then get it (the transformers engine computes on CPU here, torch has no
CUDA; Ray's logical GPU is what is checked). With no GPU ever, the stage fails after its configured
wait with a message that says what was asked, what the cluster has and which setting to change; the
placement groups it created are gone after success and after failure. The reward model's actors are
placed the same way and fail as clearly.

Isolated: each test starts its own Ray head, so this module runs in its own pytest process.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pyarrow as pa
import pytest

from config_helpers import make_config
from ray_processes import NO_DRAIN_ENV, stop_ray_node
from factory import schema, synthetic
from factory.pipeline import run_small
from factory.stages.generate import Generate, GenerationConfig

pytestmark = pytest.mark.isolated
BIN = Path(sys.executable).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Cluster:
    """A head started with ``ray start --block`` and the workers added to it; stops them all."""

    def __init__(self, log_dir: Path):
        self.log_dir = log_dir
        self.port = _free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.nodes: list[subprocess.Popen] = []
        # Token authentication on, as on real clusters (cluster/): the nodes and this driver share a fresh token.
        self.auth = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}
        self.env = {**os.environ, **self.auth, "PATH": f"{BIN}:{os.environ['PATH']}", "RAY_USAGE_STATS_ENABLED": "0",
                    **NO_DRAIN_ENV}
        self.env.pop("RAY_ADDRESS", None)

    def _start(self, name: str, *args: str) -> None:
        log = open(self.log_dir / f"{name}.log", "w")
        self.nodes.append(subprocess.Popen(
            [str(BIN / "ray"), "start", "--block", "--node-ip-address=127.0.0.1", "--disable-usage-stats",
             "--object-store-memory=200000000", *args], env=self.env, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True))

    def start_head(self) -> None:
        self._start("head", "--head", f"--port={self.port}", "--num-cpus=2", "--num-gpus=0",
                    "--include-dashboard=false")

    def add_worker(self, num_gpus: int) -> None:
        self._start(f"worker-{len(self.nodes)}", f"--address={self.address}", "--num-cpus=2", f"--num-gpus={num_gpus}")

    def gpu_node_ids(self) -> list[str]:
        import ray

        return [n["NodeID"] for n in ray.nodes() if n.get("Alive") and n["Resources"].get("GPU")]

    def stop(self) -> None:
        for node in reversed(self.nodes):  # workers first, the head last
            stop_ray_node(node)


@contextlib.contextmanager
def _driver_auth(auth: dict[str, str]):
    """This process's Ray driver authenticates with ``auth`` (Ray reads the token once, at import:
    its cached state is reset on the way in and out)."""
    from ray._private.authentication_test_utils import reset_auth_token_state

    from factory.runtime import scoped_environ

    try:
        with scoped_environ(auth):
            reset_auth_token_state()
            yield
    finally:
        reset_auth_token_state()  # after the variables are restored


@pytest.fixture
def cluster(tmp_path):
    import ray

    nodes = Cluster(tmp_path)
    with _driver_auth(nodes.auth):
        nodes.start_head()
        try:
            deadline = time.monotonic() + 120
            while True:
                try:
                    ray.init(address=nodes.address, log_to_driver=False)
                    break
                except Exception:
                    if time.monotonic() > deadline or nodes.nodes[0].poll() is not None:
                        pytest.fail("ray head did not come up:\n" + (tmp_path / "head.log").read_text()[-3000:])
                    time.sleep(1)
            yield nodes
        finally:
            ray.shutdown()
            nodes.stop()


def _prompts(n: int = 3) -> pa.Table:
    rows = [dict(p, source="synthetic", source_row=i + 1) for i, p in enumerate(synthetic.make_problems(n, seed=4))]
    return schema.conform(pa.Table.from_pylist(rows), schema.PROMPT_SCHEMA)


def _config(model: str, **resources) -> GenerationConfig:
    return GenerationConfig.model_validate({
        "engine": {"backend": "transformers", "model": model, "dtype": "float32"},
        "sampling": {"n": 1, "max_tokens": 16, "seed": 0},
        "resources": {"device": "gpu", "batch_size": 8, **resources},
    })


def _generate(cfg: GenerationConfig, prompts: pa.Table):
    return run_small([Generate], make_config(generation=cfg), prompts)


def _our_placement_groups(stage: str = "generation") -> dict[str, str]:
    import ray

    return {pg["name"]: pg["state"] for pg in ray.util.placement_group_table().values()
            if pg["name"].startswith(f"factory-{stage}-")}


def test_actor_gets_the_gpu_of_a_worker_that_joins_after_the_stage_started(cluster, tiny_models, caplog):
    caplog.set_level(logging.WARNING, logger="factory.generate")
    joins = threading.Timer(3.0, cluster.add_worker, kwargs={"num_gpus": 1})
    joins.start()
    try:
        out, [record] = _generate(_config(tiny_models.teacher, wait_for_resources_s=300), _prompts())
    finally:
        joins.cancel()
    [placement] = record.stats["placements"]
    assert placement["resources"].get("GPU") == 1.0 and len(placement["gpu_ids"]) == 1
    assert cluster.gpu_node_ids() == [placement["node_id"]]
    assert set(out["gen_status"].to_pylist()) == {"ok"}
    assert "waiting" in caplog.text and "GPU: 1" in caplog.text  # it said what it waited for


def test_stage_fails_clearly_when_no_gpu_ever_joins(cluster, tiny_models):
    started = time.monotonic()
    with pytest.raises(Exception) as info:
        _generate(_config(tiny_models.teacher, wait_for_resources_s=4), _prompts())
    message = str(info.value)
    assert "1 engine replica(s) of [{CPU: 1, GPU: 1}] each (device gpu)" in message  # what was asked
    assert "it has {CPU: 2, GPU: 0} over 1 alive node(s)" in message  # what the cluster has
    assert "generation.resources.device: cpu" in message and "wait_for_resources_s" in message  # what to change
    assert time.monotonic() - started < 120
    assert set(_our_placement_groups().values()) == {"REMOVED"}


def test_placement_groups_are_removed_after_success_and_after_failure(cluster, tiny_models):
    cluster.add_worker(num_gpus=2)
    deadline = time.monotonic() + 120
    while not cluster.gpu_node_ids() and time.monotonic() < deadline:
        time.sleep(0.5)
    cfg = _config(tiny_models.teacher, num_actors=2)  # two replicas of {CPU: 1, GPU: 1}
    _generate(cfg, _prompts())
    after_success = _our_placement_groups()
    assert len(after_success) == 2 and set(after_success.values()) == {"REMOVED"}

    broken = cfg.model_copy(update={"engine": cfg.engine.model_copy(update={"model": str(tiny_models.teacher) + "-gone"})})
    with pytest.raises(Exception):
        _generate(broken, _prompts())  # the actors fail to load the model
    after_failure = _our_placement_groups()
    assert len(after_failure) == 4 and set(after_failure.values()) == {"REMOVED"}


def test_reward_stage_fails_clearly_when_no_gpu_ever_joins(cluster):
    from factory.stages.reward import Reward, RewardConfig

    cfg = make_config(reward=RewardConfig(enabled=True, model="tiny:reward", num_gpus_per_actor=1,
                                          wait_for_resources_s=4))
    rows = pa.table({"prompt": ["1+1?"], "completion": ["2"], "gen_status": ["ok"]})
    with pytest.raises(Exception) as info:
        run_small([Reward], cfg, rows)
    message = str(info.value)
    assert "reward: the cluster did not provide 1 actor(s) of [{CPU: 1, GPU: 1}] each (device gpu)" in message
    assert "reward.num_gpus_per_actor: 0" in message and "reward.wait_for_resources_s" in message
    groups = _our_placement_groups("reward")
    assert groups and set(groups.values()) == {"REMOVED"}
