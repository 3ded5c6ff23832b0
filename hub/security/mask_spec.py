"""The vocabulary of the masking allowlists (Leaf, Obj, ListOf, Either, Special) and the walk
that applies one to a value: what is on the list and of its type is shown, everything else
becomes HIDDEN. The lists themselves are in allowlists.py; masking.py is what callers use. Pure.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

HIDDEN = "[hidden]"
# A field not on the allowlist keeps its name (so an operator sees that `phone` was sent)
# when the name looks like a field name; other keys (with spaces, digits first, very long: a
# key can hold a name as easily as a value can) are only counted, under this key.
HIDDEN_FIELDS = "[hidden fields]"
_FIELD_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_\-]{0,39}")


@dataclass(frozen=True, slots=True)
class Leaf:
    """A scalar shown as it is when `ok(value)`, else HIDDEN."""

    ok: Callable[[Any], bool]


@dataclass(frozen=True, slots=True)
class Obj:
    fields: Mapping[str, Spec]


@dataclass(frozen=True, slots=True)
class ListOf:
    item: Spec
    max_items: int = 200


@dataclass(frozen=True, slots=True)
class Either:
    """The first alternative whose shape (object, list, scalar) the value has."""

    options: tuple[Spec, ...]


@dataclass(frozen=True, slots=True)
class Special:
    """A whole sub-tree turned into something safe by a function (names, identifiers)."""

    render: Callable[[Any], Any]


Spec = Leaf | Obj | ListOf | Either | Special


def apply_spec(value: Any, spec: Spec) -> Any:
    if isinstance(spec, Special):
        return spec.render(value)
    if isinstance(spec, Leaf):
        return value if spec.ok(value) else HIDDEN
    if isinstance(spec, ListOf):
        if not isinstance(value, list):
            return HIDDEN
        shown = [apply_spec(item, spec.item) for item in value[: spec.max_items]]
        if len(value) > spec.max_items:
            shown.append(HIDDEN)
        return shown
    if isinstance(spec, Either):
        for option in spec.options:
            if _shape_fits(value, option):
                return apply_spec(value, option)
        return HIDDEN
    if not isinstance(value, dict):
        return HIDDEN
    masked: dict[str, Any] = {}
    hidden = 0
    for key, item in value.items():
        if isinstance(key, str) and key in spec.fields:
            masked[key] = apply_spec(item, spec.fields[key])
        elif isinstance(key, str) and _FIELD_NAME.fullmatch(key) and key != HIDDEN_FIELDS:
            masked[key] = HIDDEN  # the field's name says what is missing, never its value
        else:
            hidden += 1
    if hidden:
        masked[HIDDEN_FIELDS] = hidden
    return masked


def _shape_fits(value: Any, spec: Spec) -> bool:
    if isinstance(spec, Special):
        return True
    if isinstance(spec, Obj):
        return isinstance(value, dict)
    if isinstance(spec, ListOf):
        return isinstance(value, list)
    return not isinstance(value, dict | list)
