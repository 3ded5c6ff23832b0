"""Reading a justice message's body before its contract is checked: size, content type
(application/json, UTF-8), JSON (duplicate keys reported, NaN and Infinity refused) and FHIR
text (no control characters or odd spaces in any string). Used by alert.read_document and
check_document, the entry point every justice contract goes through.

Pure: no I/O, no clock. Problem messages name fields, never the values sent.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

from hub.contracts.problems import _SAFE_FIELD_NAME, ROOT, _child, _field_name
from hub.errors import InvalidMessage
from hub.messages import Problem

# ---- strings: every one accepted must be a valid FHIR string --------------------------------

# FHIR R4 `string` (datatypes.html#string): no code point below U+0020 except tab, CR and LF.
# Also refused: DEL and the C1 controls (terminal escapes, never text) and lone surrogates,
# which JSON's \\uD800 escapes can produce but no UTF-8 encoder (nor any receiver) accepts.
_NOT_TEXT = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")
# FHIR's string regex is `[ \r\n\t\S]+`: any other white space (no-break space, the Unicode
# line and paragraph separators, the typographic spaces) is not allowed anywhere in a string.
_ODD_SPACE = re.compile(r"[\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]")


def text_problems(value: object, path: str = ROOT) -> Iterator[Problem]:
    """A problem for each string value in `value` that is not valid FHIR text, by field path;
    the character itself is never quoted."""
    if isinstance(value, str):
        if _NOT_TEXT.search(value):
            yield Problem(
                path,
                "contains a control character or an unpaired surrogate "
                "(only tab, CR and LF are allowed)",
            )
        elif _ODD_SPACE.search(value):
            yield Problem(
                path,
                "contains a space character FHIR does not allow (a no-break space, a line or "
                "paragraph separator or a typographic space): use an ordinary space",
            )
    elif isinstance(value, dict):
        for name, child in value.items():
            shown = name if _SAFE_FIELD_NAME.fullmatch(str(name)) else "(name not shown)"
            yield from text_problems(child, _child(path, shown))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            yield from text_problems(child, f"{path}[{index}]")


# ---- the body: JSON as sent --------------------------------------------------------------


class _DuplicateKeys(dict[str, Any]):
    """A JSON object that arrived with a key more than once (the last value is kept)."""

    duplicates: tuple[str, ...] = ()


def _object_with_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    names = [name for name, _ in pairs]
    if len(set(names)) == len(names):
        return dict(pairs)
    obj = _DuplicateKeys(pairs)
    obj.duplicates = tuple(dict.fromkeys(n for n in names if names.count(n) > 1))
    return obj


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not allowed in JSON")


def _duplicate_key_problems(value: object, path: str = ROOT) -> Iterator[Problem]:
    if isinstance(value, dict):
        if isinstance(value, _DuplicateKeys):
            for name in value.duplicates:
                yield Problem(path, f"duplicate key {_field_name(name)}")
        for name, child in value.items():
            yield from _duplicate_key_problems(child, _child(path, name))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            yield from _duplicate_key_problems(child, f"{path}[{index}]")


def _content_type_problems(content_type: str | None) -> list[Problem]:
    if not content_type:
        # The publishing rules require it: a body of unknown type is not guessed at.
        return [Problem(ROOT, "content type missing: must be application/json")]
    media_type, *params = (part.strip().lower() for part in content_type.split(";"))
    problems = []
    if media_type != "application/json":
        problems.append(Problem(ROOT, "content type must be application/json"))
    for param in params:
        name, _, value = param.partition("=")
        if name.strip() == "charset" and value.strip().strip('"') not in ("utf-8", "utf8"):
            problems.append(Problem(ROOT, "charset must be utf-8"))
    return problems


def _decode(
    body: bytes, *, content_type: str | None, max_bytes: int
) -> tuple[object, list[Problem]]:
    """The parsed body and any content-type problems; InvalidMessage if it cannot be read."""
    if len(body) > max_bytes:
        raise InvalidMessage(
            [Problem(ROOT, f"body is {len(body)} bytes; the limit is {max_bytes} bytes")]
        )
    problems = _content_type_problems(content_type)
    # `from None` below: the decoder's exception holds the whole document, personal data included.
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidMessage(
            [*problems, Problem(ROOT, f"not valid UTF-8 (bad byte at offset {exc.start})")]
        ) from None
    try:
        document = json.loads(
            text, object_pairs_hook=_object_with_duplicates, parse_constant=_reject_constant
        )
    except json.JSONDecodeError as exc:
        where = f" at line {exc.lineno} column {exc.colno}"
        raise InvalidMessage(
            [*problems, Problem(ROOT, f"not valid JSON: {exc.msg}{where}")]
        ) from None
    except RecursionError:
        raise InvalidMessage(
            [*problems, Problem(ROOT, "not valid JSON: nested too deeply")]
        ) from None
    except ValueError as exc:  # NaN/Infinity, or an integer too long to convert
        raise InvalidMessage(
            [*problems, Problem(ROOT, f"not valid JSON: {_value_error_reason(exc)}")]
        ) from None
    return document, problems


def _value_error_reason(exc: ValueError) -> str:
    text = str(exc)
    return text if text.endswith("is not allowed in JSON") else "a number is too long"


def _get(document: object, *keys: str) -> object:
    for key in keys:
        if not isinstance(document, dict):
            return None
        document = document.get(key)
    return document
