"""Where a configured model name points, and what exactly it is.

Contract:
- :func:`resolve_model` maps ``tiny:<name>`` to the locally built tiny model's directory (building the
  tiny kit once if needed) and returns every other name unchanged. The tiny kit is imported only for
  ``tiny:`` names, so production code never depends on it otherwise.
- :func:`model_identity` names the bytes a model loads from, for lineage and generation keys; it is
  never empty. A local directory (``tiny:`` ones included) is ``sha256:<hex>``, its content
  fingerprint: the sha256 of the ``sha256sum`` listing (``<hex>  <name>`` lines, sorted by name) of
  its top-level :data:`IDENTITY_SUFFIXES` files (weight shards, config, tokenizer and chat template,
  remote code), so two retrains of one architecture, whose file names and sizes are identical, differ.
  A hub id pinned to a revision is ``<id>@<revision>``; an unpinned hub id is the fingerprint of its
  locally cached snapshot (what an offline load reads); one with no cached snapshot raises
  :class:`ModelIdentityError` (pin a revision or stage it).
- Hashing a 64 GB teacher takes about a minute, so each file's digest is cached under
  ``$FACTORY_CACHE/model-identity/`` keyed by the directory's path and reused while the file's
  (size, mtime, inode, ctime) are unchanged; ctime moves on every write, also one that restores the
  old mtime (``cp -p``, ``rsync -a --inplace``). A ``FINGERPRINT`` file that ``cluster/stage_models.sh``
  wrote at staging time gives the digests without reading the shards, trusted only while every listed
  file's (size, inode, mtime, ctime) still match and no file was added or removed.
Not covered: files in subdirectories (loaders read the top level); file names with newlines.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

TINY_PREFIX = "tiny:"
TINY_NAMES = ("tokenizer", "teacher", "student", "reward")
IDENTITY_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".json", ".model", ".txt", ".jinja", ".tiktoken", ".py")
"""Files that decide what a model directory computes (``cluster/stage_models.sh`` lists the same)."""
STAGED_FINGERPRINT = "FINGERPRINT"
"""Written by ``cluster/stage_models.sh``: ``sha256 size inode mtime_ns ctime_ns name`` per file, tab-separated."""
_CHUNK = 8 << 20


class ModelIdentityError(ValueError):
    """A model whose identity cannot be established (an unpinned hub id with no cached snapshot)."""


def is_tiny(name: str) -> bool:
    """Whether ``name`` names one of the locally built tiny models."""
    return name.startswith(TINY_PREFIX)


def resolve_model(name: str) -> str:
    """``tiny:<tokenizer|teacher|student|reward>`` -> the ensured local directory; other names unchanged."""
    if not is_tiny(name):
        return name
    which = name.removeprefix(TINY_PREFIX)
    if which not in TINY_NAMES:
        raise ValueError(f"unknown tiny model {name!r}: use one of " + ", ".join(TINY_PREFIX + n for n in TINY_NAMES))
    from factory import tiny

    return getattr(tiny.ensure(), which)


TINY_BUILD_PHASES = r"^tiny build( \d+/\d+: \w[\w ]*: |: done)"
"""The tiny build's log lines a first run shows on the console: each phase's start, and the end."""


def configured_models(cfg) -> list[str]:
    """Every model name a factory config loads: teacher, reward model (when enabled), student."""
    names = [cfg.generation.engine.model]
    if cfg.reward.enabled:
        names.append(cfg.reward.model)
    if cfg.train is not None:
        names.append(cfg.train.student)
    return names


def prepare_tiny_models(names: list[str]) -> None:
    """Build the tiny kit here, on the driver, before any Ray worker asks for it, when one of ``names``
    is a ``tiny:`` model and the kit is not built yet: the first run then shows the build's progress
    instead of a Ray actor building it silently. A no-op otherwise."""
    if not any(is_tiny(name) for name in names):
        return
    from factory import tiny

    if not tiny.is_built():
        from factory.console import relay, say

        say("building the tiny models (first run only; cached under $FACTORY_CACHE/tiny)")
        with relay("factory.tiny", phases=TINY_BUILD_PHASES):  # its phases and a progress line a minute
            tiny.ensure()


def model_identity(name: str, revision: str | None = None) -> str:
    """What ``name`` (at ``revision``) loads, as a string (see the module docstring)."""
    path = Path(resolve_model(name))
    if path.is_dir():
        return directory_fingerprint(path)
    if revision:
        return f"{name}@{revision}"
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HFValidationError, LocalEntryNotFoundError

    try:
        snapshot = snapshot_download(name, local_files_only=True)
    except (LocalEntryNotFoundError, HFValidationError) as err:  # not cached / not a hub id (a missing path)
        raise ModelIdentityError(f"model {name!r} is neither a local directory nor pinned to a revision, and has no "
                                 "cached snapshot to fingerprint: set its revision or stage it "
                                 "(cluster/stage_models.sh)") from err
    return directory_fingerprint(Path(snapshot))


def identity_files(directory: Path) -> list[Path]:
    """The top-level files the fingerprint covers, sorted by name."""
    return sorted((entry for entry in directory.iterdir() if entry.name.endswith(IDENTITY_SUFFIXES)
                   and not entry.name.startswith(".") and entry.is_file()), key=lambda entry: entry.name)


def directory_fingerprint(directory: Path) -> str:
    """``sha256:<hex>`` of a model directory's content (module docstring), computed at most once per file
    version thanks to the staged ``FINGERPRINT`` or the digest cache."""
    directory = directory.resolve()
    files = identity_files(directory)
    if not files:
        raise ModelIdentityError(f"{directory} has no model files ({', '.join(IDENTITY_SUFFIXES)})")
    stats = {f.name: _stat_key(f) for f in files}
    digests = _staged_digests(directory, stats)
    if digests is None:
        digests = _cached_digests(directory, files, stats)
    listing = "".join(f"{digests[name]}  {name}\n" for name in sorted(digests))
    return "sha256:" + hashlib.sha256(listing.encode()).hexdigest()


def _stat_key(path: Path) -> list[int]:
    """(size, inode, mtime_ns, ctime_ns): what changes whenever a file's bytes may have."""
    st = os.stat(path)
    return [st.st_size, st.st_ino, st.st_mtime_ns, st.st_ctime_ns]


def file_sha256(path: Path) -> str:
    """Hex sha256 of one file, read in 8 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _staged_digests(directory: Path, stats: dict[str, list[int]]) -> dict[str, str] | None:
    """The digests in a staged FINGERPRINT file, if it lists exactly these files, unchanged since."""
    try:
        lines = (directory / STAGED_FINGERPRINT).read_text().splitlines()
    except (FileNotFoundError, UnicodeDecodeError):
        return None
    staged: dict[str, tuple[str, list[int]]] = {}
    for line in lines:
        parts = line.split("\t")
        if line.startswith("#") or not line.strip():
            continue
        if len(parts) != 6 or not all(p.isdigit() for p in parts[1:5]):
            return None
        staged[parts[5]] = (parts[0], [int(p) for p in parts[1:5]])
    if set(staged) != set(stats) or any(staged[name][1] != key for name, key in stats.items()):
        return None
    return {name: digest for name, (digest, _) in staged.items()}


def _cache_path(directory: Path) -> Path:
    root = os.environ.get("FACTORY_CACHE") or os.path.expanduser("~/.cache/distill-factory")
    return Path(root, "model-identity", hashlib.sha256(str(directory).encode()).hexdigest()[:32] + ".json")


def _cached_digests(directory: Path, files: list[Path], stats: dict[str, list[int]]) -> dict[str, str]:
    """Each file's digest: the cached one while its stat key is unchanged, else hashed (and cached)."""
    from factory.atomic import write_atomic

    cache = _cache_path(directory)
    try:
        known = json.loads(cache.read_text())["files"]
    except (FileNotFoundError, ValueError, KeyError, TypeError):
        known = {}
    digests, changed = {}, False
    for f in files:
        entry = known.get(f.name)
        if isinstance(entry, dict) and entry.get("stat") == stats[f.name] and isinstance(entry.get("sha256"), str):
            digests[f.name] = entry["sha256"]
            continue
        digests[f.name] = file_sha256(f)
        changed = True
        if _stat_key(f) != stats[f.name]:
            raise ModelIdentityError(f"{f} changed while it was being fingerprinted; retry once staging is done")
    if changed or set(known) != set(digests):
        record = {"path": str(directory), "files": {name: {"stat": stats[name], "sha256": digests[name]}
                                                    for name in digests}}
        write_atomic(str(cache), json.dumps(record, indent=1).encode())
    return digests
