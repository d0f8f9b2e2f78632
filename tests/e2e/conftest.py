"""End-to-end tests: a matrix, ``labelbudget run`` or a full round of training through the protocol or
the CLI. Every test in this folder is marked ``slow`` (``pytest -m "not slow"`` skips them)."""

from __future__ import annotations

from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects by marker
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in Path(item.path).resolve().parents:
            item.add_marker(pytest.mark.slow)
