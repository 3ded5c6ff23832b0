"""The layout's import rules (issue 10), checked over hub/ by reading every module's imports.

- Only hub/adapters/, hub/bootstrap/, hub/runtime.py and hub/cli/ import hub.adapters.
- Each I/O library is imported only inside its one adapter package.
- hub/transforms/ and hub/routes/ import nothing with I/O and read no clock.
"""

from __future__ import annotations

import ast
import functools
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

HUB = Path(__file__).resolve().parents[2] / "hub"

MAY_IMPORT_ADAPTERS = ("adapters/", "bootstrap/", "runtime.py", "cli/")

# library -> the one place (a path prefix under hub/) that may import it
LIBRARY_HOMES = {
    "kombu": "adapters/rabbitmq/",
    "amqp": "adapters/rabbitmq/",
    "sqlalchemy": "adapters/sql/",
    "psycopg": "adapters/sql/",
    "urllib3": "adapters/http_client.py",
    "httpx": "adapters/http_client.py",
    "starlette": "adapters/inbound/",
    "uvicorn": "adapters/inbound/",
}

# Known exceptions, each with its reason; test_known_exceptions_are_still_needed keeps this
# list honest (an entry no longer needed fails, so it is removed).
KNOWN = {
    ("cli/demo.py", "kombu"): "the demo's justice side listens on kombu's memory transport",
    ("adapters/mesh.py", "urllib3"): "mesh-client speaks requests over urllib3: its errors are "
    "urllib3's, translated there",
}

PURE = ("transforms/", "routes/")
IO_MODULES = {
    "socket",
    "ssl",
    "subprocess",
    "threading",
    "asyncio",
    "urllib",
    "http",
    "requests",
    "os",
    "io",
    "shutil",
    "tempfile",
    "time",
    "logging",
    "sqlite3",
    "mesh_client",
    *LIBRARY_HOMES,
}
CLOCK_CALLS = {"now", "utcnow", "today", "time", "monotonic", "perf_counter", "sleep"}


@functools.cache
def _modules() -> tuple[tuple[str, ast.Module], ...]:
    """Every module under hub/, parsed once per test session (the rules only read the trees)."""
    return tuple(
        (str(p.relative_to(HUB)), ast.parse(p.read_text(), filename=str(p)))
        for p in sorted(HUB.rglob("*.py"))
    )


def _imports(tree: ast.Module) -> list[str]:
    out: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.extend(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.append(node.module)
            if node.module == "hub":
                out.extend(f"hub.{a.name}" for a in node.names)
    return out


def _adapter_imports() -> list[str]:
    return [
        f"{rel} imports {name}"
        for rel, tree in _modules()
        if not rel.startswith(MAY_IMPORT_ADAPTERS)
        for name in _imports(tree)
        if name == "hub.adapters" or name.startswith("hub.adapters.")
    ]


def _library_imports() -> list[tuple[str, str]]:
    found = []
    for rel, tree in _modules():
        for name in _imports(tree):
            top = name.split(".")[0]
            home = LIBRARY_HOMES.get(top)
            if home and not rel.startswith(home):
                found.append((rel, top))
    return sorted(set(found))


def _impure() -> list[str]:
    found = []
    for rel, tree in _modules():
        if not rel.startswith(PURE):
            continue
        for name in _imports(tree):
            if name.split(".")[0] in IO_MODULES or name.startswith(("hub.adapters", "hub.log")):
                found.append(f"{rel} imports {name}")
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in CLOCK_CALLS
            ):
                found.append(f"{rel}:{node.lineno} calls .{node.func.attr}()")
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id == "open"
            ):
                found.append(f"{rel}:{node.lineno} calls open()")
    return found


def test_only_the_edge_imports_adapters() -> None:
    assert _adapter_imports() == []


def test_each_io_library_is_imported_only_in_its_adapter() -> None:
    assert [f for f in _library_imports() if f not in KNOWN] == []


def test_known_exceptions_are_still_needed() -> None:
    assert set(KNOWN) <= set(_library_imports())


def test_transforms_and_routes_do_no_io_and_read_no_clock() -> None:
    assert _impure() == []


def test_no_module_is_called_utils() -> None:
    assert [
        rel for rel, _ in _modules() if Path(rel).stem in {"utils", "util", "helpers", "misc"}
    ] == []


def test_the_checker_sees_a_violation() -> None:
    """The rules are not vacuous: a module importing an adapter or reading a clock is caught."""
    tree = ast.parse("import kombu\nfrom hub.adapters.sql import ledger\nx = datetime.now(UTC)\n")
    assert "kombu" in _imports(tree) and "hub.adapters.sql" in _imports(tree)
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call)]
    assert isinstance(calls[0].func, ast.Attribute) and calls[0].func.attr in CLOCK_CALLS
