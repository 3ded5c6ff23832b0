"""NHS number and PNC id checks, and the safe-identifier rule for ids the hub echoes."""

from __future__ import annotations

import re

_SAFE_ALERT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,99}$")


_NHS_NUMBER = re.compile(r"^[0-9]{10}$")
# Police National Computer id: YY or YYYY, optional slash, 1-7 digit serial, check letter
# (MoJ hmpps-person-record PNCIdentifier.kt; see reference/nhs-fhir-facts.md section 2).
_PNC = re.compile(r"^(?:([0-9]{2}|[0-9]{4})/([0-9]{1,7})|([0-9]{3,11}))([A-Z])$")
_PNC_SHAPE = re.compile(r"^[0-9]{2,4}/?[0-9]{1,7}[A-Z]$")  # the schema's pattern
_PNC_CHECK_LETTERS = "ZABCDEFGHJKLMNPQRTUVWXY"


def nhs_number_is_valid(s: str) -> bool:
    """True if `s` is 10 ASCII digits whose last is the Modulus 11 check digit
    (NHS Data Dictionary, NHS NUMBER): a remainder giving check 10 makes the number invalid."""
    if not isinstance(s, str) or not _NHS_NUMBER.fullmatch(s):
        return False
    total = sum(int(digit) * weight for digit, weight in zip(s[:9], range(10, 1, -1), strict=True))
    check = 11 - total % 11
    if check == 11:
        check = 0
    return check != 10 and check == int(s[9])


def pnc_id_is_valid(s: str) -> bool:
    """True if `s` is a PNC id whose check letter is right.

    Canonical form YYYY/NNNNNNNC; the check letter is
    'ZABCDEFGHJKLMNPQRTUVWXY'[int(YY + serial padded to 7) % 23], YY the year's last two digits.
    Without a slash, fewer than 10 characters means a two-digit year, otherwise four (as MoJ's
    PNCIdentifier reads them). A four-digit year must be 19xx or 20xx.
    """
    if not isinstance(s, str):
        return False
    match = _PNC.fullmatch(s)
    if match is None:
        return False
    year, serial, unslashed, check = match.groups()
    if unslashed is not None:
        year_len = 2 if len(s) < 10 else 4
        year, serial = unslashed[:year_len], unslashed[year_len:]
        if not 1 <= len(serial) <= 7:
            return False
    if len(year) == 4 and year[:2] not in ("19", "20"):
        return False
    expected = _PNC_CHECK_LETTERS[int(year[-2:] + serial.rjust(7, "0")) % len(_PNC_CHECK_LETTERS)]
    return check == expected


def is_safe_id(value: str) -> bool:
    """An id shaped like the hub's (letters, digits, `._:-`, ≤ 100): safe to echo back."""
    return bool(_SAFE_ALERT_ID.fullmatch(value))
