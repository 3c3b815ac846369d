"""``factory.runtime.scoped_environ``: variables set inside the block, each earlier value or absence restored
after it, also when the block raises (the vLLM engine start relies on it, ``start_async_llm``)."""

from __future__ import annotations

import os

import pytest

from factory.runtime import scoped_environ


def test_values_hold_inside_and_earlier_values_or_absence_come_back(monkeypatch):
    monkeypatch.setenv("FACTORY_TEST_SET", "before")
    monkeypatch.delenv("FACTORY_TEST_UNSET", raising=False)
    with pytest.raises(RuntimeError):
        with scoped_environ({"FACTORY_TEST_SET": "inside", "FACTORY_TEST_UNSET": "inside"}):
            assert os.environ["FACTORY_TEST_SET"] == os.environ["FACTORY_TEST_UNSET"] == "inside"
            raise RuntimeError("the block fails")
    assert os.environ["FACTORY_TEST_SET"] == "before" and "FACTORY_TEST_UNSET" not in os.environ
