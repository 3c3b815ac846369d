"""The stage runner keeps each stage's stats, never its output dataset: a barrier stage's output is a lazy dataset
over the blocks it materialised (every row, chains included), and a runner that held it would pin those blocks in
the object store until the run ends, beside the next barrier's own copy."""

from __future__ import annotations

import gc
import weakref

from factory.pipeline import Pipeline, RunContext, Stage, StageOutput


class FakeDataset:
    """Stands in for a lazy Ray Dataset: ``map_batches`` makes a new one that refers to nothing upstream."""

    def map_batches(self, fn, **kwargs):
        return FakeDataset()


class Barrier(Stage):
    name = "barrier"
    outputs: list = []

    def apply(self, ds):
        output = StageOutput(FakeDataset(), {"rows": 1})
        type(self).outputs.append(weakref.ref(output.ds))
        return output


class Last(Barrier):
    name = "last"
    outputs: list = []


def test_the_runner_holds_no_stage_output_after_applying():
    pipeline = Pipeline([Barrier, Last], cfg=None, run=RunContext(run_dir=".", meter=None))
    final = pipeline.apply(FakeDataset())  # noqa: F841 (the run's dataset stays alive, as in a real run)
    gc.collect()
    assert Barrier.outputs[0]() is None, "the first stage's output dataset is still referenced after apply"
