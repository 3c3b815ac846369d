"""`import factory` (and the config/CLI modules a driver loads first) must not pull heavy libraries."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = ["torch", "vllm", "deepspeed", "transformers", "ray"]


@pytest.mark.parametrize("module", ["factory", "factory.config", "factory.cli", "factory.flow", "factory.schema"])
def test_import_leaves_heavy_libraries_unimported(module):
    code = f"import sys, json, {module}; print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []
