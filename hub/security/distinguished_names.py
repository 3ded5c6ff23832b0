"""X.509 distinguished names as RFC 4514 text, both ways: parsed into a value that compares
as the name does (attribute types normalised, multi-valued RDNs unordered, values exact), and
written from `ssl.SSLSocket.getpeercert()['subject']`. Pure; used to match a service's client
certificate with its `inbound.client_cert_subject`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

# One DN: its RDNs in RFC 4514 order (most specific first), each a sorted tuple of
# (attribute type, value) pairs; attribute types in the short form below when they have one.
DistinguishedName = tuple[tuple[tuple[str, str], ...], ...]

# RFC 4514 §3 short names, and the OpenSSL long names `ssl.getpeercert()` reports.
_SHORT_NAMES = {
    "cn": "CN",
    "commonname": "CN",
    "l": "L",
    "localityname": "L",
    "st": "ST",
    "stateorprovincename": "ST",
    "o": "O",
    "organizationname": "O",
    "ou": "OU",
    "organizationalunitname": "OU",
    "c": "C",
    "countryname": "C",
    "street": "STREET",
    "streetaddress": "STREET",
    "dc": "DC",
    "domaincomponent": "DC",
    "uid": "UID",
    "userid": "UID",
}
_MUST_ESCAPE = frozenset('"+,;<>\\')  # RFC 4514 §2.4 (a value may hold '=' as it is)
_ESCAPABLE = _MUST_ESCAPE | {" ", "#", "="}
_HEX_PAIRS = re.compile(r"(?:\\[0-9A-Fa-f]{2})+")
_TYPE = re.compile(r"[A-Za-z][A-Za-z0-9-]*|[0-9]+(?:\.[0-9]+)+")


def _attribute_type(name: str) -> str:
    return _SHORT_NAMES.get(name.lower(), name if name[:1].isdigit() else name.lower())


def parse_distinguished_name(text: str) -> DistinguishedName:
    """An RFC 4514 string (as `openssl x509 -noout -subject -nameopt RFC2253` prints it, e.g.
    'CN=ld.example.nhs.uk,O=West Yorkshire L&D,C=GB') as a comparable value. Attribute types
    are case-insensitive and may be long names ('commonName'); unescaped spaces around ',', '+'
    and '=' are ignored; values are compared exactly. Raises ValueError."""
    rdns: list[tuple[tuple[str, str], ...]] = []
    avas: list[tuple[str, str]] = []
    chars: list[tuple[str, bool]] = []  # the attribute being read: (character, was escaped)
    i = 0
    while i < len(text):
        char = text[i]
        if char == "\\":
            run = _HEX_PAIRS.match(text, i)
            if run:  # escaped bytes, e.g. \C3\A9: UTF-8 (ValueError when it is not)
                decoded = bytes.fromhex(run.group().replace("\\", "")).decode("utf-8")
                chars.extend((c, True) for c in decoded)
                i = run.end()
                continue
            if i + 1 < len(text) and text[i + 1] in _ESCAPABLE:
                chars.append((text[i + 1], True))
                i += 2
                continue
            raise ValueError("a '\\' must escape a special character or two hex digits")
        if char in ",;+":
            avas.append(_attribute(chars))
            chars = []
            if char != "+":
                rdns.append(tuple(sorted(avas)))
                avas = []
        else:
            chars.append((char, False))
        i += 1
    avas.append(_attribute(chars))
    rdns.append(tuple(sorted(avas)))
    return tuple(rdns)


def _attribute(chars: list[tuple[str, bool]]) -> tuple[str, str]:
    equals = next((n for n, (c, escaped) in enumerate(chars) if c == "=" and not escaped), None)
    if equals is None:
        raise ValueError("every attribute needs 'type=value'")
    key = "".join(c for c, _ in chars[:equals]).strip()
    if not _TYPE.fullmatch(key):
        raise ValueError(f"{key!r} is not an attribute type")
    value = chars[equals + 1 :]
    while value and value[0] == (" ", False):
        value.pop(0)
    while value and value[-1] == (" ", False):
        value.pop()
    if not value:
        raise ValueError(f"{key} has no value")
    if value[0] == ("#", False):
        raise ValueError(f"{key}: hex-encoded values (#...) are not supported")
    for c, escaped in value:
        if c in _MUST_ESCAPE and not escaped:
            raise ValueError(f"{key}: {c!r} must be escaped")
    return _attribute_type(key), "".join(c for c, _ in value)


def format_distinguished_name(rdns: DistinguishedName) -> str:
    return ",".join("+".join(f"{k}={_escape(v)}" for k, v in rdn) for rdn in rdns)


def peer_subject_name(subject: Iterable[Iterable[tuple[str, str]]]) -> str:
    """RFC 4514 text for `ssl.SSLSocket.getpeercert()['subject']` (RDNs most general first, as
    the certificate holds them; RFC 4514 writes them most specific first)."""
    rdns = [tuple(sorted((_attribute_type(k), v) for k, v in rdn)) for rdn in subject]
    return format_distinguished_name(tuple(reversed(rdns)))


def _escape(value: str) -> str:
    out = "".join("\\" + c if c in _MUST_ESCAPE else "\\00" if c == "\0" else c for c in value)
    if out.startswith((" ", "#")):
        out = "\\" + out
    if out.endswith(" ") and not out.endswith("\\ "):
        out = out[:-1] + "\\ "
    return out
