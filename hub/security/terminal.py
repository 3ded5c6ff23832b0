"""Text for an operator's terminal: anything the CLI prints passes through `neutralise`, so a
header, id or error a publisher or service wrote cannot move the cursor, retitle the window,
hide a line (ESC/CSI/OSC/DCS sequences, C0 and C1 controls) or reorder what is read (Unicode
bidi overrides and isolates, zero-width and other format characters). Pure: no I/O.
"""

from __future__ import annotations

import unicodedata


def _safe(ch: str) -> str:
    if ch == "\t":
        return " "
    category = unicodedata.category(ch)
    # Cc: C0, DEL and C1 controls; Cf: bidi overrides/isolates, zero-width joiners, BOM…;
    # Zl/Zp: line and paragraph separators; Cs/Co/Cn: surrogates, private use, unassigned.
    if category in ("Cc", "Cf", "Zl", "Zp", "Cs", "Co", "Cn"):
        return f"\\u{ord(ch):04x}" if ord(ch) <= 0xFFFF else f"\\U{ord(ch):08x}"
    return ch


def neutralise(text: str, *, keep_newlines: bool = False) -> str:
    """`text` with every control, escape sequence and format character made visible and inert
    (as a `\\uXXXX` escape). With `keep_newlines`, "\\n" stays a line break (for text the CLI
    itself laid out in lines)."""
    if keep_newlines:
        return "\n".join(neutralise(line) for line in text.split("\n"))
    # ESC and the C1 introducers become visible text, so what followed them (the "[31m" of a
    # CSI, an OSC's title) is printed as plain characters and nothing is interpreted.
    return "".join(_safe(ch) for ch in text)
