"""A local run whose actors would hold every CPU fails at once, naming the setting, instead of stalling."""

from __future__ import annotations

import pytest

from config_helpers import make_config
from factory.config import ConfigError
from factory.flow import check_cpu_headroom


@pytest.mark.parametrize(("reward", "fails"), [(True, True), (False, False)])
def test_actors_holding_every_cpu_are_a_config_error(ray_local, reward, fails):
    cfg = make_config(reward={"enabled": reward, "model": "tiny:reward", "num_actors": 1, "num_gpus_per_actor": 0},
                      generation={"resources": {"num_actors": 1, "num_cpus_per_actor": 1}})
    assert ray_local.cluster_resources()["CPU"] == 2
    if fails:
        with pytest.raises(ConfigError, match="run.ray.num_cpus"):
            check_cpu_headroom(cfg)
    else:
        check_cpu_headroom(cfg)
