"""Which code produced a snapshot: recorded in every manifest so a dataset can be traced to a commit."""

from __future__ import annotations

import functools
import os
import subprocess

import factory


@functools.lru_cache(maxsize=1)
def code_version() -> str:
    """``"git:<describe --always --dirty --tags>"`` when the ``factory`` package sits in a git
    work tree with at least one commit, else ``"distill-factory==<package version>"`` (e.g. an
    installed wheel, no git binary, or an empty repo). Cached per process."""
    package_root = os.path.dirname(os.path.dirname(os.path.abspath(factory.__file__)))
    described = _git(package_root, "describe", "--always", "--dirty", "--tags")
    toplevel = _git(package_root, "rev-parse", "--show-toplevel")
    if described and toplevel and os.path.realpath(toplevel) == os.path.realpath(package_root):
        return f"git:{described}"
    return f"distill-factory=={factory.__version__}"


def _git(cwd: str, *args: str) -> str | None:
    try:
        done = subprocess.run(
            ["git", "-C", cwd, *args], capture_output=True, text=True, timeout=10, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() or None
