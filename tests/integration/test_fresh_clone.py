"""A user's first step, for real: `git clone` of the committed project into a new folder with no
../shared beside it, then `factory validate` on every config under configs/ (recursively), run from
the clone's own code. Nothing a shipped file reads may live outside the repository or an installed
package. (The clone holds the committed HEAD, as a user's would: uncommitted edits are not in it.)"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def clone(tmp_path_factory) -> Path:
    target = tmp_path_factory.mktemp("user") / "distill-factory"
    subprocess.run(["git", "clone", "--quiet", str(REPO), str(target)], check=True)
    assert not (target.parent / "shared").exists()
    return target


def _configs(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in (root / "configs").rglob("*.yaml"))


@pytest.mark.parametrize("config", _configs(REPO))
def test_every_config_validates_in_a_fresh_clone(clone, config):
    env = {**os.environ, "PYTHONPATH": str(clone)}
    proc = subprocess.run([sys.executable, "-m", "factory.cli", "validate", config], cwd=clone, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_no_shipped_file_reads_outside_the_repository(clone):
    shipped = [p for d in ("configs", "factory", "pipelines", "cluster") for p in (clone / d).rglob("*") if p.is_file()]
    shipped.append(clone / "Makefile")
    offending = [str(p.relative_to(clone)) for p in shipped if "../shared" in p.read_text(errors="ignore")]
    assert offending == []
