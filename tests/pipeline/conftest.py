from __future__ import annotations

import importlib

import pytest

# the module, not the function ``befa_viz.attribution.explain`` that the package re-exports
explain_module = importlib.import_module("befa_viz.attribution.explain")


@pytest.fixture
def count_method_calls(monkeypatch):
    """Count calls of the attribution methods (``attribute``, as ``explain`` calls it)."""
    calls: list[str] = []
    real = explain_module.attribute

    def counting(method, *args, **kwargs):
        calls.append(method)
        return real(method, *args, **kwargs)

    monkeypatch.setattr(explain_module, "attribute", counting)
    return calls
