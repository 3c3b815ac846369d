"""Tiny local models for tests and demos: tokenizer, teacher, student and reward model, cached.

Everything is built on CPU from a seed, with no network (:mod:`factory.tiny_build`), and cached
under ``$FACTORY_CACHE/tiny/<spec-hash>`` (FACTORY_CACHE defaults to ``~/.cache/distill-factory``):

- a byte-level character tokenizer (one token per byte, DeepSeek-R1's special tokens as single
  tokens) saved as a transformers fast tokenizer with an R1-style chat template;
- a **teacher** ``Qwen2ForCausalLM`` trained on the synthetic addition task (:mod:`factory.synthetic`)
  in R1's format ("<think>\\n" reasoning "\\n</think>\\n\\n\\boxed{..}"): good but fallible when
  sampled (temperature 0.6, top-p 0.95), its errors forgotten carries and skipped operands;
- a smaller untrained **student** ``Qwen2ForCausalLM`` for distillation;
- a **reward** ``Qwen2ForSequenceClassification`` (one label, reads the last token) trained on the
  teacher's own graded samples to score correct chains above wrong ones of the same prompt.

``tiny_build.json`` beside them records the build (teacher greedy accuracy, sampled pass@1/pass@k,
reward-model AUC on held-out samples, seconds per phase). Contract: :func:`ensure` returns the
cached build, building it once (atomically, under a file lock) if absent; :func:`is_built` says
whether a call would build. Builds log their phases and progress to the ``factory.tiny`` logger
(INFO). Not covered: quality beyond this one synthetic task; the models are for exercising the
factory, not for real use.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path

from factory.tiny_build import (  # noqa: F401  the kit's API, re-exported
    ASSISTANT,
    BOS,
    CHAT_TEMPLATE,
    END_THINK,
    EOS,
    PAD,
    PHASES,
    SPEC,
    THINK,
    USER,
    Shape,
    TinyModels,
    TinySpec,
    build,
    build_tokenizer,
    models_at,
    new_model,
    qwen2_config,
)
from factory.tiny_training import chat_prompt  # noqa: F401  part of this module's API

_log = logging.getLogger("factory.tiny")


def default_cache_dir(spec: TinySpec = SPEC) -> str:
    """``$FACTORY_CACHE/tiny/<spec-hash>``, FACTORY_CACHE defaulting to ~/.cache/distill-factory."""
    cache = os.environ.get("FACTORY_CACHE") or os.path.expanduser("~/.cache/distill-factory")
    return os.path.join(cache, "tiny", spec.hash())


def is_built(cache_dir: str | None = None) -> bool:
    """Whether the cached build exists, i.e. :func:`ensure` would return at once."""
    return (Path(cache_dir or default_cache_dir()) / "tiny_build.json").exists()


def ensure(cache_dir: str | None = None) -> TinyModels:
    """The cached build (seed 0) at ``cache_dir`` (default :func:`default_cache_dir`), building it
    first if absent. Builds go to a sibling temp dir renamed into place, under a file lock, so
    concurrent callers build once and never see a partial build (a caller that finds another
    building logs that it waits); temp dirs of builders that died are removed by the next builder."""
    root = Path(cache_dir or default_cache_dir())
    if is_built(str(root)):
        return models_at(root)
    root.parent.mkdir(parents=True, exist_ok=True)
    with open(root.parent / f".{root.name}.lock", "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            _log.info("tiny models: another process is building %s; waiting for it", root)
            fcntl.flock(lock, fcntl.LOCK_EX)
        if not is_built(str(root)):
            for stale in root.parent.glob(f".{root.name}.tmp-*"):  # left by a builder that died holding the lock
                shutil.rmtree(stale, ignore_errors=True)
            _log.info("tiny models: building into %s (once; about five minutes on two cores)", root)
            staging = tempfile.mkdtemp(prefix=f".{root.name}.tmp-", dir=root.parent)
            try:
                build(staging, seed=0)
                os.rename(staging, root)
            finally:
                shutil.rmtree(staging, ignore_errors=True)
    return models_at(root)


def main(argv: list[str] | None = None) -> int:
    """``factory tiny build [--out DIR] [--seed N]``: build (or, without --out, ensure the cache) and print the info."""
    parser = argparse.ArgumentParser(prog="factory tiny", description="Build the tiny local models.")
    commands = parser.add_subparsers(dest="command", required=True)
    build_parser = commands.add_parser("build", help="build tokenizer, teacher, student and reward model")
    build_parser.add_argument("--out", help="output directory (default: the shared cache, seed 0)")
    build_parser.add_argument("--seed", type=int, default=0, help="seed (only with --out)")
    args = parser.parse_args(argv)
    if args.out is None and args.seed != 0:
        parser.error("--seed needs --out: the shared cache always holds the seed-0 build")
    if not logging.getLogger().handlers:  # run as a command: show the build's progress
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    start = time.monotonic()
    models = build(args.out, args.seed) if args.out else ensure()
    print(json.dumps({"root": models.root, "seconds": round(time.monotonic() - start, 1), **models.info}, indent=2, sort_keys=True))
    return 0
