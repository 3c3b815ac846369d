"""The local files a config names, checked before anything runs (``factory validate``, ``factory run``).

Covered: prompt sources, held-out eval sets, decontamination eval sets (each a local path or a
``pkg:`` file, :mod:`factory.data_files`), and the teacher, reward, student and RL models when they
are local paths (absolute, or starting with ``.``/``~``; ``tiny:`` names and hub ids are not files).
Paths under one of ``run.cluster_mounts`` exist on the cluster's nodes (a shared volume), not on the
machine that validates: they are reported as unchecked, never as missing. Every problem names the
config field (dotted path, as YAML writes it) and the file.
"""

from __future__ import annotations

import os
from pathlib import PurePosixPath
from typing import Iterator

from factory.data_files import is_packaged, resolve

MODEL_FIELDS = ("generation.engine.model", "reward.model", "train.student")


def _is_local_path(value: str) -> bool:
    return value.startswith(("/", ".", "~")) or os.sep in value and os.path.exists(value.split(os.sep)[0])


def named_paths(cfg) -> Iterator[tuple[str, str]]:
    """``(field path, value)`` of every file or model directory ``cfg`` names (module docstring)."""
    for index, source in enumerate(cfg.prompts.sources):
        if source.kind != "synthetic":
            yield f"prompts.sources.{index}.path", source.path
    for index, source in enumerate(cfg.eval.heldout if cfg.eval.enabled else ()):
        if source.kind != "synthetic":
            yield f"eval.heldout.{index}.path", source.path
    for index, spec in enumerate(cfg.decontam.benchmarks):
        yield f"decontam.benchmarks.{index}.path", spec.path
    for field in MODEL_FIELDS:
        section, *rest = field.split(".")
        value = getattr(cfg, section, None)
        for part in rest:
            value = getattr(value, part, None) if value is not None else None
        if isinstance(value, str) and value and _is_local_path(value):
            yield field, value


def _under(path: str, mounts) -> str | None:
    for mount in mounts:
        if PurePosixPath(os.path.abspath(os.path.expanduser(path))).is_relative_to(mount):
            return mount
    return None


def check_paths(cfg) -> tuple[list[str], list[str]]:
    """``(problems, unchecked)``: one line per missing file, naming its field; one per file left to
    the cluster (under a ``run.cluster_mounts`` entry)."""
    problems, unchecked = [], []
    for field, value in named_paths(cfg):
        mount = None if is_packaged(value) else _under(value, cfg.run.cluster_mounts)
        if mount is not None:
            unchecked.append(f"{field}: {value} (on the cluster mount {mount})")
            continue
        try:
            path = resolve(value).expanduser()
        except FileNotFoundError as error:
            problems.append(f"{field}: {error}")
            continue
        if not path.exists():
            problems.append(f"{field}: {value} does not exist (resolved to {path.resolve()})")
    return problems, unchecked
