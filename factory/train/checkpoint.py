"""Run-directory layout and atomic checkpoint publishing.

Layout under ``out_dir``::

    checkpoints/step_00000012/   HF model dir: weights (save_pretrained), tokenizer,
                                 training_card.json, README.md, trainer_state.json
    checkpoints/latest           name of the newest *complete* checkpoint, written last
    deepspeed/step_00000012/     DeepSpeed engine state (optimizer, LR scheduler, every rank's shard)
    metrics.json                 the finished run's figures (written by rank 0)

Contract: an HF dir is written under a temp name and renamed into place; ``latest`` is replaced
atomically only after the HF dir and every rank's DeepSpeed state exist, so a reader (or a resumed
run) never sees a partial checkpoint. Stale temp dirs of a killed run are removed at the next start.
Multi-node runs need ``out_dir`` on storage every node sees. Not covered: pruning old checkpoints.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from factory.atomic import write_atomic

LATEST = "latest"
TRAINER_STATE = "trainer_state.json"
CARD = "training_card.json"
METRICS = "metrics.json"


def checkpoint_name(step: int) -> str:
    """Directory name of the checkpoint taken after ``step`` optimizer steps."""
    return f"step_{step:08d}"


def write_json_atomic(path: Path, data) -> None:
    """Write ``data`` as JSON to ``path`` via a temp file and rename."""
    write_atomic(str(path), json.dumps(data, indent=2, sort_keys=True).encode())


def latest_checkpoint(out_dir: str) -> Path | None:
    """The newest complete HF checkpoint dir of the run at ``out_dir``, or None."""
    marker = Path(out_dir) / "checkpoints" / LATEST
    if not marker.exists():
        return None
    path = marker.parent / marker.read_text().strip()
    return path if (path / TRAINER_STATE).exists() else None


def read_trainer_state(checkpoint_dir: Path) -> dict:
    """``step``, ``loss_curve``, ``tokens`` and ``train_s`` recorded with a checkpoint."""
    return json.loads((checkpoint_dir / TRAINER_STATE).read_text())


def remove_stale_temps(out_dir: str) -> None:
    """Delete half-written checkpoint dirs left by a killed run."""
    root = Path(out_dir) / "checkpoints"
    for path in root.glob(".tmp-*") if root.exists() else ():
        shutil.rmtree(path, ignore_errors=True)


def publish_hf_checkpoint(out_dir: str, step: int, model, tokenizer, state_dict, card: dict, trainer_state: dict) -> Path:
    """Write the consolidated model (``state_dict`` if given, else the model's own), tokenizer, card and
    trainer state under a temp name, then rename to ``checkpoints/step_N``. Does not touch ``latest``."""
    root = Path(out_dir) / "checkpoints"
    root.mkdir(parents=True, exist_ok=True)
    final = root / checkpoint_name(step)
    tmp = root / f".tmp-{checkpoint_name(step)}"
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp, state_dict=state_dict, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    write_json_atomic(tmp / CARD, card)
    (tmp / "README.md").write_text(render_readme(card))
    write_json_atomic(tmp / TRAINER_STATE, trainer_state)
    if final.exists():
        shutil.rmtree(final)
    os.rename(tmp, final)
    return final


def mark_latest(out_dir: str, step: int) -> None:
    """Point ``checkpoints/latest`` at step ``step``'s checkpoint (atomic replace)."""
    write_atomic(str(Path(out_dir) / "checkpoints" / LATEST), (checkpoint_name(step) + "\n").encode())


def render_readme(card: dict) -> str:
    """A human-readable model card from the training card."""
    lines = [
        f"# Distilled student ({card.get('student')})",
        "",
        f"Fine-tuned with distill-factory SFT on data snapshot `{card.get('snapshot_version')}`.",
        "",
        f"- steps: {card.get('step')} of {card.get('total_steps')}",
        f"- sample order: {card.get('curriculum')} (seed {card.get('config', {}).get('seed')})",
        f"- packing: {card.get('config', {}).get('packing')}, max_seq_len {card.get('config', {}).get('max_seq_len')}",
        f"- samples longer than max_seq_len (dropped, not trained on): {card.get('overlong_samples')}",
        "",
        "Full config and data fingerprint: `training_card.json`.",
        "",
    ]
    return "\n".join(lines)
