"""Every test module carries the marker of its directory, so `-m unit` (and the others) select
all of them: a module without one is silently skipped by the fast subset."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

TESTS = Path(__file__).resolve().parents[1]


def declared_markers(module: Path) -> set[str]:
    """The marks of `pytestmark = pytest.mark.<name>` (or a list of them) that a module
    declares at its top level."""
    for node in ast.parse(module.read_text()).body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "pytestmark" for t in node.targets
        ):
            values = node.value.elts if isinstance(node.value, ast.List) else [node.value]
            return {v.attr for v in values if isinstance(v, ast.Attribute)}
    return set()


@pytest.mark.parametrize("kind", ["unit", "integration", "e2e"])
def test_every_test_module_carries_the_marker_of_its_directory(kind: str) -> None:
    modules = sorted((TESTS / kind).glob("test_*.py"))
    assert modules, f"no test modules found under tests/{kind}"

    unmarked = [m.name for m in modules if kind not in declared_markers(m)]

    assert unmarked == []
