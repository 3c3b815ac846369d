"""The stage protocol, and the runner that assembles, checks and meters a declared list of stages.

A stage is one class in one module (see docs/ARCHITECTURE.md):

- ``name``: unique; the ``drop_stage`` of every row it drops, its manifest entry and report row.
- ``section``: the :class:`~factory.config.FactoryConfig` field holding its config (``None``: none).
- ``requires`` / ``adds``: the columns it reads and the columns it adds or sets. :func:`check_assembly`
  checks, before anything runs, that every required column is there (the input's columns plus what
  earlier stages add), and the runner checks every batch on its way in, with an error naming the
  stage and the column (:class:`MissingColumns`).
- ``barrier``: ``None`` for a stage that streams; otherwise why it needs the whole dataset at once
  (a grouping shuffle, a global duplicate resolution). Everything else streams: the runner never
  materialises between stages.
- ``enabled(cfg)`` decides whether the stage runs; ``apply(ds)`` is its one entry point and returns a
  :class:`StageOutput`: the (lazy) dataset and its stats, a dict or a callable that is called after
  the dataset has executed (stats only known then, e.g. counts of a streaming stage).
- ``view(stats)`` may return a custom report section as data (``{"tables": [...], "bars": [...]}``,
  see :mod:`factory.report`); the report renders every stage generically, in pipeline order.

A stage that loops (generation in rounds with verification in between) is still one stage: its
``apply`` runs the rounds, per prompt, inside its actors; ``requires``/``adds`` describe the whole loop
and its stats carry the per-round figures.

Filters never remove rows: they mark them with :func:`factory.rows.mark_drops` (first reason wins).
Stages wrap their per-batch work with :meth:`Stage.map_batches`, which times it (busy seconds per
stage, summed over workers) in the run's :class:`StageMeter` actor; the runner adds one counting step
at each stage's output (rows, kept rows and this stage's drops by reason), so the counts of a
streaming pipeline are exact once it has executed, and every stage is accounted the same way.
"""

from __future__ import annotations

import abc
import inspect
import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, ClassVar

import pyarrow as pa
import pyarrow.compute as pc

if TYPE_CHECKING:
    import ray.data

    from factory.config import FactoryConfig

log = logging.getLogger("factory")


class MissingColumns(ValueError):
    """A stage's required columns are not in its input (at assembly, or in a batch)."""


@dataclass
class StageOutput:
    """What :meth:`Stage.apply` returns: the lazy dataset and its stats (or a callable for them)."""

    ds: "ray.data.Dataset"
    stats: dict | Callable[[], dict] | None = None


@dataclass
class RunContext:
    """What every stage of one run may read besides its config."""

    run_dir: str
    """The run's directory (checkpoints, side files)."""
    meter: Any
    """The run's :class:`StageMeter` actor handle."""
    extras: dict = field(default_factory=dict)
    """Run-level inputs a stage declares it reads (e.g. ``prior_signatures`` of a refresh)."""


class Stage(abc.ABC):
    """Base of every stage; see the module docstring for the protocol."""

    name: ClassVar[str]
    section: ClassVar[str | None] = None
    requires: ClassVar[tuple[str, ...]] = ()
    adds: ClassVar[tuple[str, ...]] = ()
    barrier: ClassVar[str | None] = None

    def __init__(self, cfg: "FactoryConfig", run: RunContext):
        self.cfg = cfg
        self.run = run

    @property
    def config(self):
        """This stage's config section (``section`` is a dotted path, e.g. ``filter.quality``)."""
        if self.section is None:
            return None
        value = self.cfg
        for part in self.section.split("."):
            value = getattr(value, part)
        return value

    @classmethod
    def enabled(cls, cfg: "FactoryConfig") -> bool:
        """Whether the stage runs for ``cfg`` (default: always)."""
        return True

    @abc.abstractmethod
    def apply(self, ds: "ray.data.Dataset") -> StageOutput:
        """The stage's one entry point (lazy: nothing runs until the dataset is consumed)."""

    def view(self, stats: dict) -> dict | None:
        """A custom report section as data, or None (the generic row is always shown)."""
        return None

    def metered(self, fn):
        """``fn`` (a per-batch function) timed in the meter, for operators other than map_batches."""
        return _metered_function(fn, self.name, self.run.meter)

    def map_batches(self, ds: "ray.data.Dataset", fn, **kwargs) -> "ray.data.Dataset":
        """``ds.map_batches(fn, batch_format="pyarrow", **kwargs)`` with the call timed in the meter.
        ``fn`` is a function or a callable class (an actor pool UDF, sync or async)."""
        kwargs.setdefault("batch_format", "pyarrow")
        meter = self.run.meter
        if inspect.isclass(fn):
            wrapper = _AsyncMeteredClass if inspect.iscoroutinefunction(fn.__call__) else _MeteredClass
            constructor = {"cls": fn, "kwargs": kwargs.pop("fn_constructor_kwargs", {}), "stage": self.name,
                           "meter": meter}
            return ds.map_batches(wrapper, fn_constructor_kwargs=constructor, **kwargs)
        return ds.map_batches(_metered_function(fn, self.name, meter), **kwargs)


def _metered_function(fn, stage: str, meter):
    def metered(batch, *args, **kwargs):
        started = time.perf_counter()
        out = fn(batch, *args, **kwargs)
        meter.busy.remote(stage, time.perf_counter() - started)
        return out

    return metered


class _MeteredClass:
    def __init__(self, cls, kwargs: dict, stage: str, meter):
        self._inner, self._stage, self._meter = cls(**kwargs), stage, meter

    def __call__(self, batch):
        started = time.perf_counter()
        out = self._inner(batch)
        self._meter.busy.remote(self._stage, time.perf_counter() - started)
        return out


class _AsyncMeteredClass(_MeteredClass):
    async def __call__(self, batch):
        started = time.perf_counter()
        out = await self._inner(batch)
        self._meter.busy.remote(self._stage, time.perf_counter() - started)
        return out


def check_assembly(stages: list[type[Stage]], available: set[str]) -> set[str]:
    """Raise :class:`MissingColumns` naming the first stage whose required columns neither the
    input nor an earlier stage provides; return the columns available after the last stage."""
    columns = set(available)
    for stage in stages:
        missing = [column for column in stage.requires if column not in columns]
        if missing:
            raise MissingColumns(f"stage {stage.name!r} requires column(s) {missing}, which neither the input "
                                 f"nor an earlier stage adds (available: {sorted(columns)})")
        columns |= set(stage.adds)
    return columns


def require_columns(batch: pa.Table, stage: str, columns: tuple[str, ...]) -> pa.Table:
    """``batch`` unchanged, or :class:`MissingColumns` naming the stage and the absent columns."""
    missing = [column for column in columns if column not in batch.column_names]
    if missing:
        raise MissingColumns(f"stage {stage!r}: input batch has no column(s) {missing} "
                             f"(it has {batch.column_names})")
    return batch


def batch_counts(batch: pa.Table, stage: str) -> dict:
    """Rows, kept rows (``drop_reason`` null) and the rows this stage dropped, by reason."""
    counts = {"rows": batch.num_rows, "kept": batch.num_rows, "drops": {}}
    if "drop_reason" in batch.column_names:
        counts["kept"] = batch["drop_reason"].null_count
    if "drop_stage" in batch.column_names:
        mine = batch.filter(pc.equal(batch["drop_stage"], stage))
        if mine.num_rows:
            reasons = pc.value_counts(mine["drop_reason"])
            counts["drops"] = {item["values"].as_py(): item["counts"].as_py() for item in reasons}
    return counts


def _count(batch: pa.Table, stage: str, meter, side: str) -> pa.Table:
    """Counts the batch in the meter before passing it on: waited for, so that the counts are complete
    once the dataset has executed (a fire-and-forget call from a worker may land after the driver
    reads the meter)."""
    import ray

    ray.get(meter.rows.remote(stage, side, batch_counts(batch, stage)))
    return batch


@dataclass
class StageRecord:
    """One stage's accounting, as it goes into the manifest (in pipeline order)."""

    name: str
    section: str | None
    barrier: str | None
    requires: list[str]
    adds: list[str]
    rows_in: int = 0
    rows_out: int = 0
    kept_in: int = 0
    kept_out: int = 0
    drops: dict[str, int] = field(default_factory=dict)
    busy_s: float = 0.0
    wall_s: float | None = None
    stats: dict | None = None
    view: dict | None = None

    def as_manifest(self) -> dict:
        return {key: value for key, value in self.__dict__.items() if value is not None or key in ("stats",)}


class Pipeline:
    """An ordered list of stage classes run over one dataset (see the module docstring)."""

    def __init__(self, stages: list[type[Stage]], cfg: "FactoryConfig", run: RunContext):
        self.stages = [stage(cfg, run) for stage in stages if stage.enabled(cfg)]
        self.run = run
        self._stats: list[dict | Callable[[], dict] | None] = []
        """Each applied stage's stats, not its :class:`StageOutput`: holding a stage's output dataset would pin the
        blocks a barrier stage materialised (every row, text included) in the object store until the run ends."""

    def check(self, available: set[str]) -> set[str]:
        """:func:`check_assembly` over the enabled stages."""
        return check_assembly([type(stage) for stage in self.stages], available)

    def apply(self, ds: "ray.data.Dataset") -> "ray.data.Dataset":
        """Chain every enabled stage over ``ds`` (lazy), with the column check on the way into each
        and the counting step on the way out."""
        for stage in self.stages:
            _log_stage(stage)
            checked = ds.map_batches(require_columns, batch_format="pyarrow",
                                     fn_kwargs={"stage": stage.name, "columns": stage.requires})
            checked = checked.map_batches(_count, batch_format="pyarrow",
                                          fn_kwargs={"stage": stage.name, "meter": self.run.meter, "side": "in"})
            output = stage.apply(checked)
            self._stats.append(output.stats)
            ds = output.ds.map_batches(_count, batch_format="pyarrow",
                                       fn_kwargs={"stage": stage.name, "meter": self.run.meter, "side": "out"})
        return ds

    def records(self) -> list[StageRecord]:
        """Every stage's accounting (none when :meth:`apply` was never called); call after the dataset
        :meth:`apply` returned has executed."""
        import ray

        if not self._stats:
            return []

        measured = ray.get(self.run.meter.snapshot.remote())
        records = []
        for stage, stats in zip(self.stages, self._stats, strict=True):
            stats = stats() if callable(stats) else stats
            m = measured.get(stage.name, {})
            records.append(StageRecord(
                name=stage.name, section=stage.section, barrier=stage.barrier, requires=list(stage.requires),
                adds=list(stage.adds), rows_in=m.get("in", {}).get("rows", 0), rows_out=m.get("out", {}).get("rows", 0),
                kept_in=m.get("in", {}).get("kept", 0), kept_out=m.get("out", {}).get("kept", 0),
                drops=dict(sorted(m.get("out", {}).get("drops", {}).items())), busy_s=round(m.get("busy_s", 0.0), 3),
                wall_s=_span(m), stats=stats, view=stage.view(stats) if stats is not None else None))
        return records


def run_small(stages: list[type[Stage]], cfg: "FactoryConfig", data, *, run_dir: str | None = None,
              extras: dict | None = None) -> tuple[pa.Table, list[StageRecord]]:
    """Run ``stages`` over a small input (a pyarrow Table or a Ray Dataset) and collect the output on
    the driver, with the stages' records (evaluation of held-out sets; the tests of single stages)."""
    import ray

    from factory.rows import collect

    meter = new_meter()
    try:
        pipeline = Pipeline(stages, cfg, RunContext(run_dir=run_dir, meter=meter, extras=dict(extras or {})))
        ds = ray.data.from_arrow(data) if isinstance(data, pa.Table) else data
        table = collect(pipeline.apply(ds))
        return table, pipeline.records()
    finally:
        ray.kill(meter)


def _log_stage(stage: Stage) -> None:
    mode = f"barrier: {stage.barrier}" if stage.barrier else "streams"
    log.debug("pipeline: %s (%s) requires %s adds %s", stage.name, mode, list(stage.requires), list(stage.adds))


def _span(measured: dict) -> float | None:
    first, last = measured.get("first_start"), measured.get("last_end")
    return None if first is None or last is None else round(max(last - first, 0.0), 3)


class MeterState:
    """Per stage: rows in/out, kept rows, drops by reason, busy seconds, and the span from its first
    input batch to its last output batch (plain Python, testable without Ray)."""

    def __init__(self, clock=time.time):
        self.stages: dict[str, dict] = {}
        self._clock = clock

    def _entry(self, stage: str) -> dict:
        return self.stages.setdefault(stage, {"busy_s": 0.0, "first_start": None, "last_end": None})

    def busy(self, stage: str, seconds: float) -> None:
        self._entry(stage)["busy_s"] += seconds

    def rows(self, stage: str, side: str, counts: dict) -> None:
        entry = self._entry(stage)
        totals = entry.setdefault(side, {"rows": 0, "kept": 0, "drops": {}})
        totals["rows"] += counts["rows"]
        totals["kept"] += counts["kept"]
        for reason, n in counts["drops"].items():
            totals["drops"][reason] = totals["drops"].get(reason, 0) + n
        if side == "in" and entry["first_start"] is None:
            entry["first_start"] = self._clock()
        if side == "out":
            entry["last_end"] = self._clock()

    def snapshot(self) -> dict:
        """Every stage's figures so far."""
        return {name: {**entry, **{side: dict(entry[side]) for side in ("in", "out") if side in entry}}
                for name, entry in self.stages.items()}


def new_meter():
    """A :class:`MeterState` in a small Ray actor (0 CPUs), one per run."""
    import ray

    actor = ray.remote(num_cpus=0, max_restarts=0)(MeterState)
    return actor.remote()
