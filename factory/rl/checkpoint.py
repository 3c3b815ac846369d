"""The RL checkpoint: an HF model directory with its lineage and a content identity.

Layout of ``<run dir>/checkpoint`` (usable as ``generation.engine.model`` / ``train.student`` as is):
weights (safetensors), config, generation config, tokenizer and chat template as the trainer saved
them (its pickled ``training_args.bin`` removed: the card records the settings), ``rl_card.json``
(lineage: base model and its identity, prompt set, reward config, algorithm settings, steps, library
versions) and a README.

Identity: :func:`factory.models.model_identity` of the finished directory (a content fingerprint of
its weight, config, tokenizer and card files), taken after the card is written, so it covers the
lineage too and anyone can recompute it; it is recorded where it does not change what it covers:
the README, the run's ``rl_summary.json`` and each evaluation's ``model_identity``. Not covered:
pruning the trainer's resumable checkpoints.
"""

from __future__ import annotations

import json
from pathlib import Path

from factory.atomic import write_atomic

CARD = "rl_card.json"


def finish_checkpoint(model_dir: str, card: dict) -> str:
    """Write the card, drop the trainer's pickle, and return the directory's identity (also in its README)."""
    from factory.models import model_identity

    (Path(model_dir) / "training_args.bin").unlink(missing_ok=True)
    write_atomic(str(Path(model_dir) / CARD), json.dumps(card, indent=2, sort_keys=True).encode())
    identity = model_identity(model_dir)
    write_atomic(str(Path(model_dir) / "README.md"), render_readme(card, identity).encode())
    return identity


def read_card(model_dir: str) -> dict:
    """The ``rl_card.json`` of an RL checkpoint."""
    return json.loads((Path(model_dir) / CARD).read_text())


def render_readme(card: dict, identity: str) -> str:
    """A human-readable model card from the RL card."""
    base, prompts, grpo = card["base"], card["prompts"], card["grpo"]
    return "\n".join([
        f"# RL-tuned policy (GRPO) from {base['model']}",
        "",
        f"- identity: `{identity}` (factory.models.model_identity of this directory)",
        f"- base: `{base['model']}` revision {base.get('revision')} identity `{base.get('identity')}`",
        f"- prompts: {prompts['selected']} selected from snapshot `{prompts['snapshot']}` "
        f"(pass rate band {prompts['band']}), left out: {prompts['left_out']}",
        f"- rewards: {card['rewards']}",
        f"- steps: {card['steps']}, group size {grpo['group_size']}, {grpo['prompts_per_step']} prompts per step, "
        f"beta {grpo['beta']}, lr {grpo['learning_rate']}",
        f"- completions excluded for verifier failures: {card['excluded']}",
        "",
        "Full lineage: `rl_card.json`.",
        "",
    ])
