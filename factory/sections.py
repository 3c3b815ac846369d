"""Base class for every config section.

Contract: sections are frozen pydantic models that reject unknown keys. Each field carries a
one-line docstring (``use_attribute_docstrings``) saying why it exists; ``factory validate`` and
error messages show the full dotted field path. Strictness (no "False" for a bool, no "3" for an
int) is applied by :func:`factory.config.load_config`, which validates in pydantic's strict JSON
mode, so sections declare plain types and stay easy to build in Python.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Section(BaseModel):
    """A frozen, closed config section."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)
