"""Where generation actors run: the resource request from the config, and the placement groups
that hold it while the stage runs.

Contract:
- :func:`resource_request` derives what one engine replica needs from the config alone: the device
  (``resources.device``; ``auto`` is the installed engine build's, :func:`factory.engines.installed_device`),
  tensor × pipeline parallel size, CPUs and accelerator type. Never from the nodes that are up at
  submit time: GPU workers that start at ``min_workers: 0`` join only once there is demand for them.
- :class:`ActorPlacement` is the ``ray_remote_args_fn`` of the actor pool (of generation, and of any
  other stage's pool through :func:`pool_request`: the reward model's). At the first actor start of
  an execution it creates one placement group per replica, which the cluster's autoscaler sees as
  demand, and waits until all are placed, logging once a minute what it waits for; past
  ``resources.wait_for_resources_s`` it removes them and raises :class:`ResourcesUnavailable`
  (what was asked, what the cluster has, which setting to change). Each actor then runs in
  bundle 0 of its own group; with vLLM tensor/pipeline parallelism the other bundles hold one GPU
  per rank and vLLM's Ray executor places its workers there (``placement_group_capture_child_tasks``).
- The groups are removed when the execution that created them ends, whether it succeeded or failed
  (a Ray Data execution callback, after Ray Data has stopped the actors), and by :meth:`ActorPlacement.release`.

Not covered: two executions of one stage's dataset at the same time (they would share the groups);
a cluster without an autoscaler is waited for all the same (there is no telling it will not grow).
"""

from __future__ import annotations

import logging
import time
import uuid
import weakref
from dataclasses import dataclass
from typing import Callable

import ray
from ray.data._internal.execution.execution_callback import ExecutionCallback
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

from factory.stages.generate.config import GenerationConfig

log = logging.getLogger("factory.generate")
LOG_EVERY_S = 60.0
"""While waiting for resources, one log line this often."""


GENERATION_REMEDY = ("lower generation.resources.num_actors or engine.tensor_parallel_size/pipeline_parallel_size, "
                     "set generation.resources.device: cpu to run on CPU")
"""What the generation stage's error suggests changing (besides nodes and the wait)."""


class ResourcesUnavailable(RuntimeError):
    """The cluster did not provide the generation actors' resources within the configured wait."""


@dataclass(frozen=True)
class ResourceRequest:
    """What the generation actor pool asks for: ``actors`` placement groups of ``bundles`` each."""

    device: str
    """"gpu" or "cpu" (resolved: never "auto")."""
    actors: int
    bundles: tuple[dict[str, float], ...]
    """One replica's placement group; the actor runs in bundle 0."""
    actor_cpus: float
    actor_gpus: float
    """GPUs of the actor itself (0 when vLLM ranks hold them in the other bundles)."""
    capture_child_tasks: bool
    """Whether the engine places Ray workers of its own in the group (vLLM tensor/pipeline parallelism)."""
    unit: str = "engine replica"
    """What one group holds, in words."""

    def per_replica(self) -> dict[str, float]:
        """CPU and GPU of one replica, summed over its bundles."""
        total: dict[str, float] = {}
        for bundle in self.bundles:
            for name in ("CPU", "GPU"):
                if bundle.get(name):
                    total[name] = total.get(name, 0) + bundle[name]
        return total

    def describe(self) -> str:
        """The request in words, for logs and errors."""
        bundles = ", ".join(_resources(b) for b in self.bundles)
        return f"{self.actors} {self.unit}(s) of [{bundles}] each (device {self.device})"


def resource_request(cfg: GenerationConfig) -> ResourceRequest:
    """The request of ``cfg`` (module docstring); pure: reads the config and the installed engine build."""
    from factory.engines import installed_device

    res, engine = cfg.resources, cfg.engine
    device = res.device if res.device != "auto" else installed_device(engine.backend)
    if engine.backend == "openai":  # the server computes: the actor only tokenizes and waits
        device = "cpu"
    accelerator = {f"accelerator_type:{res.accelerator_type}": 0.001} if res.accelerator_type else {}
    if device == "gpu" and engine.backend == "vllm" and engine.num_devices > 1:
        ranks = [{"CPU": res.num_cpus_per_actor, "GPU": 1.0, **accelerator}]
        ranks += [{"GPU": 1.0, **accelerator} for _ in range(engine.num_devices - 1)]
        return ResourceRequest(device, res.num_actors, tuple(ranks), res.num_cpus_per_actor, 0.0, True)
    gpus = 0.0 if device == "cpu" else float(res.num_gpus_per_actor if res.num_gpus_per_actor is not None
                                            else engine.num_devices)
    bundle = {"CPU": res.num_cpus_per_actor, **({"GPU": gpus, **accelerator} if gpus else {})}
    return ResourceRequest(device, res.num_actors, (bundle,), res.num_cpus_per_actor, gpus, False)


def pool_request(actors: int, gpus: float, cpus: float = 1.0) -> ResourceRequest:
    """The request of a pool of ``actors`` one-bundle actors with ``gpus`` and ``cpus`` each (any
    other stage's actor pool, e.g. the reward model's)."""
    bundle = {"CPU": cpus, **({"GPU": gpus} if gpus else {})}
    return ResourceRequest("gpu" if gpus else "cpu", actors, (bundle,), cpus, gpus, False, unit="actor")


def wait_until(poll: Callable[[float], bool], timeout_s: float, on_wait: Callable[[float], None],
               log_every_s: float = LOG_EVERY_S, clock: Callable[[], float] = time.monotonic) -> bool:
    """Call ``poll(seconds)`` (True once ready; it may block up to ``seconds``) until it is True or
    ``timeout_s`` have passed; ``on_wait(waited_s)`` is called when the first poll finds it not ready,
    then once every ``log_every_s``. Returns whether it became ready."""
    started = clock()
    next_note = started
    while True:
        waited = clock() - started
        if poll(max(0.0, min(1.0, timeout_s - waited))):
            return True
        waited = clock() - started
        if waited >= timeout_s:
            return False
        if clock() >= next_note:
            on_wait(waited)
            next_note = clock() + log_every_s


def cluster_summary() -> str:
    """The alive nodes' CPU/GPU totals and the largest node, in words (for the error message)."""
    nodes = [node["Resources"] for node in ray.nodes() if node.get("Alive")]
    totals = {name: sum(n.get(name, 0) for n in nodes) for name in ("CPU", "GPU")}
    largest = max(nodes, key=lambda n: (n.get("GPU", 0), n.get("CPU", 0)), default={})
    kinds = sorted({key.split(":", 1)[1] for n in nodes for key in n if key.startswith("accelerator_type:")})
    text = f"{_resources(totals)} over {len(nodes)} alive node(s) (largest: {_resources(largest)})"
    return text + (f", accelerator types {kinds}" if kinds else "")


class ActorPlacement:
    """Placement groups of one generation stage (module docstring); call it as ``ray_remote_args_fn``."""

    def __init__(self, request: ResourceRequest, wait_s: float, *, stage: str = "generation",
                 section: str = "generation.resources", remedy: str = GENERATION_REMEDY):
        self.request = request
        self.wait_s = wait_s
        self.stage = stage
        self.section = section
        """Config section whose ``wait_for_resources_s`` is the wait (named in logs and the error)."""
        self.remedy = remedy
        """The settings that shrink the request, in words (for the error)."""
        self.groups: list = []
        self.created: list[str] = []
        """Ids of every group this object created (what a test checks is gone)."""
        self._handed = 0
        self._owner: int | None = None  # id() of the executor whose execution created the groups
        _LIVE.add(self)

    def __call__(self) -> dict:
        """Remote args of the next actor: its placement group (created and waited for on first use)."""
        if not self.groups:
            self._acquire()
        group = self.groups[self._handed % len(self.groups)]  # actor k -> group k; restarts keep theirs
        self._handed += 1
        return {"scheduling_strategy": PlacementGroupSchedulingStrategy(
            group, placement_group_bundle_index=0,
            placement_group_capture_child_tasks=self.request.capture_child_tasks)}

    def _acquire(self) -> None:
        request = self.request
        prefix = f"factory-{self.stage}-{uuid.uuid4().hex[:8]}"
        self.groups = [ray.util.placement_group(list(request.bundles), strategy="PACK", name=f"{prefix}-{i}")
                       for i in range(request.actors)]
        self.created += [group.id.hex() for group in self.groups]
        ready = [group.ready() for group in self.groups]

        def poll(seconds: float) -> bool:
            done, _ = ray.wait(ready, num_returns=len(ready), timeout=seconds)
            return len(done) == len(ready)

        def note(waited: float) -> None:
            log.warning("%s: waiting %.0f of %.0f s (%s.wait_for_resources_s) for the cluster to provide %s; "
                        "it has %s", self.stage, waited, self.wait_s, self.section, request.describe(),
                        cluster_summary())

        if not wait_until(poll, self.wait_s, note):
            has = cluster_summary()
            self.release()
            raise ResourcesUnavailable(
                f"{self.stage}: the cluster did not provide {request.describe()} within {self.wait_s:.0f} s; "
                f"it has {has}. Add nodes with these resources (or raise the autoscaler's max_workers), "
                f"{self.remedy}, or raise {self.section}.wait_for_resources_s.")
        log.info("%s: placed %s", self.stage, request.describe())

    def release(self) -> None:
        """Remove the groups (idempotent); the next execution creates new ones."""
        groups, self.groups, self._handed, self._owner = self.groups, [], 0, None
        for group in groups:
            try:
                ray.util.remove_placement_group(group)
            except Exception:  # already removed, or Ray is shutting down: nothing left to hold
                log.debug("placement group %s: already gone", group.id.hex())

    def _claim(self, executor) -> None:
        if self.groups and self._owner is None:
            self._owner = id(executor)

    def _release_if_owned(self, executor) -> None:
        if self._owner == id(executor):
            self.release()


_LIVE: "weakref.WeakSet[ActorPlacement]" = weakref.WeakSet()


class ReleasePlacementGroups(ExecutionCallback):
    """Ray Data execution callback: an execution that created an :class:`ActorPlacement`'s groups
    (at its operators' start, just before this is called) removes them when it ends."""

    def before_execution_starts(self, executor) -> None:
        for placement in list(_LIVE):
            placement._claim(executor)

    def after_execution_succeeds(self, executor) -> None:
        for placement in list(_LIVE):
            placement._release_if_owned(executor)

    def after_execution_fails(self, executor, error: Exception) -> None:
        self.after_execution_succeeds(executor)


def register_release(ds) -> None:
    """Make executions of ``ds`` (and of the datasets derived from it) run :class:`ReleasePlacementGroups`."""
    context = ds.context
    if ReleasePlacementGroups not in context.custom_execution_callback_classes:
        context.custom_execution_callback_classes = [*context.custom_execution_callback_classes,
                                                     ReleasePlacementGroups]


def _resources(resources: dict) -> str:
    shown = {k: v for k, v in resources.items() if k in ("CPU", "GPU") or k.startswith("accelerator_type:")}
    return "{" + ", ".join(f"{k}: {v:g}" for k, v in sorted(shown.items())) + "}" if shown else "{}"
