"""Every test module carries the marker of its directory, so `-m unit` (and the others) select
all of them: a module without one is silently skipped by the fast subset."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

TESTS = Path(__file__).resolve().parents[1]


def declared_marker(module: Path) -> str | None:
    """The `pytestmark = pytest.mark.<name>` a module declares at its top level."""
    for node in ast.parse(module.read_text()).body:
        if (
            isinstance(node, ast.Assign)
            and any(isinstance(t, ast.Name) and t.id == "pytestmark" for t in node.targets)
            and isinstance(node.value, ast.Attribute)
        ):
            return node.value.attr
    return None


@pytest.mark.parametrize("kind", ["unit", "integration", "e2e"])
def test_every_test_module_carries_the_marker_of_its_directory(kind: str) -> None:
    modules = sorted((TESTS / kind).glob("test_*.py"))
    assert modules, f"no test modules found under tests/{kind}"

    unmarked = [m.name for m in modules if declared_marker(m) != kind]

    assert unmarked == []
