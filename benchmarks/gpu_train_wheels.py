"""Put DeepSpeed and its pure-Python dependencies as wheels into the git-ignored ``.whl/`` folder, so
``gpu_train_step.py --deepspeed`` runs on a GPU image that has only torch and transformers.

DeepSpeed ships on PyPI as source; ``pip wheel --no-build-isolation`` builds it here against the
installed torch without compiling any op (``DS_BUILD_OPS=0``: ops are JIT-built on first use, and the
factory's path uses none). Its dependencies that such an image may lack (pydantic and pydantic-core,
hjson, msgpack, ninja, py-cpuinfo, einops, psutil, tqdm, annotated-types, typing-inspection) are
downloaded as manylinux wheels for CPython 3.10-3.12. The folder must stay within ``LIMIT_MIB`` (the
device machine takes 64 MiB beside the code); the script fails otherwise. On the device::

    pip install --no-index --find-links .whl deepspeed && python benchmarks/gpu_train_step.py --deepspeed

    .venv/bin/python benchmarks/gpu_train_wheels.py [--out .whl]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

DEEPSPEED = "deepspeed==0.19.8"
DEPENDENCIES = ["pydantic>=2,<3", "hjson", "msgpack", "ninja", "py-cpuinfo", "einops", "psutil", "tqdm",
                "annotated-types", "typing-inspection"]
PYTHONS = ("3.10", "3.11", "3.12")
LIMIT_MIB = 48
"""Wheels + code must fit the 64 MiB the device machine carries; keep room for the repository."""


def pip(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "pip", *args, "-q"], check=True, env={**os.environ, "DS_BUILD_OPS": "0"})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / ".whl"))
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    pip("wheel", DEEPSPEED, "--no-deps", "--no-build-isolation", "-w", str(out))
    for python in PYTHONS:
        pip("download", *DEPENDENCIES, "--only-binary=:all:", "--platform", "manylinux2014_x86_64",
            "--python-version", python, "--implementation", "cp", "-d", str(out))
    size = sum(p.stat().st_size for p in out.glob("*.whl"))
    print(f"{len(list(out.glob('*.whl')))} wheels, {size / 2**20:.1f} MiB in {out}")
    if size > LIMIT_MIB * 2**20:
        print(f"error: more than {LIMIT_MIB} MiB", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
