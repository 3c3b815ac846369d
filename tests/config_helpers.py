"""Config helpers for tests of single stages. (A module of its own, not conftest.py: test modules
import these by name, and a name ``conftest`` is ambiguous when a subfolder has its own.)"""

from __future__ import annotations

MINIMAL_CONFIG = {
    "run": {"name": "test", "work_dir": "runs"},
    "prompts": {"sources": [{"name": "synthetic", "kind": "synthetic", "synthetic_n": 1}]},
    "generation": {},
    "store": {"root": "datasets", "dataset": "test"},
}


def make_config(**sections):
    """A valid FactoryConfig: the minimal required sections, with ``sections`` (dicts or Section
    objects, e.g. ``verify=VerifyConfig(...)``) replacing the named ones; for tests of single stages."""
    from factory.config import FactoryConfig

    return FactoryConfig.model_validate({**MINIMAL_CONFIG, **sections})
