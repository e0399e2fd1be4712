"""Masking of personal data in English and Chinese text, before anything is stored or logged
(serving's request log, the monitor's database).

Masked, each with its own placeholder:

- ``<email>``: e-mail addresses.
- ``<card>``: bank-card numbers, 13-19 digits (in groups or not) that pass the Luhn check, so an
  order number of the same length is left alone.
- ``<id>``: mainland-China resident ID numbers (18 characters, or the old 15 digits, with a
  birth date where it belongs), US social-security numbers (``123-45-6789``), Hong Kong ID
  (``A123456(7)``).
- ``<phone>``: mainland mobiles (``13812345678``, ``+86 138 1234 5678``, ``138-1234-5678``),
  mainland landlines (``010-12345678``, ``0755-1234567``), North-American numbers
  (``(555) 123-4567``, ``555-123-4567``, ``+1 555 123 4567``) and other ``+CC`` international
  numbers.

Digits run into Chinese characters with no space (``电话13812345678``), so the patterns' edges
are "not a digit or Latin letter" rather than word boundaries. Dates, times, prices, years and
short numbers are not personal data and stay (``2024-05-01``, ``¥1999``, ``12:30``).
"""

from __future__ import annotations

import re

_EDGE_L = r"(?<![0-9A-Za-z])"
_EDGE_R = r"(?![0-9A-Za-z])"

EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
# 13-19 digits, alone or in groups of 4 separated by a space or a dash
CARD = re.compile(
    _EDGE_L + r"(?:\d{4}[ -]){3}\d{1,7}" + _EDGE_R + "|" + _EDGE_L + r"\d{13,19}" + _EDGE_R
)
CN_ID = re.compile(_EDGE_L + r"(?:\d{17}[\dXx]|\d{15})" + _EDGE_R)
SSN = re.compile(_EDGE_L + r"\d{3}-\d{2}-\d{4}" + _EDGE_R)
HK_ID = re.compile(r"(?<![0-9A-Za-z])[A-Z]{1,2}\d{6}\([\dA]\)")
PHONES = [
    # mainland mobile, with or without +86 / 0086 and separators (3-4-4)
    re.compile(_EDGE_L + r"(?:(?:\+|00)86[ -]?)?1[3-9]\d(?:[ -]?\d{4}){2}" + _EDGE_R),
    # mainland landline: area code 0xx or 0xxx, then 7-8 digits
    re.compile(_EDGE_L + r"(?:\(0\d{2,3}\)|0\d{2,3}-)[ ]?\d{7,8}" + _EDGE_R),
    # North America: (555) 123-4567, 555-123-4567, 555.123.4567, +1 555 123 4567
    re.compile(
        r"(?:(?<![0-9A-Za-z])\+?1[ .-]?)?(?:\(\d{3}\)[ ]?|"
        + _EDGE_L
        + r"\d{3}[ .-])\d{3}[ .-]\d{4}"
        + _EDGE_R
    ),
    # other international numbers: +CC then 6-14 more digits in groups
    re.compile(r"(?<![0-9A-Za-z])\+\d{1,3}(?:[ -]?\d{2,5}){2,5}" + _EDGE_R),
]

_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK = "10X98765432"


def luhn_ok(digits: str) -> bool:
    """The Luhn checksum every bank-card number satisfies."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def cn_id_ok(text: str) -> bool:
    """Whether 15 or 18 characters have the shape of a mainland resident ID: a birth date
    where it belongs (YYMMDD in the old 15-digit form, 18YY/19YY/20YYMMDD in the new one).
    The check character is not required: a mistyped ID is still someone's."""
    if len(text) == 15:  # area, YYMMDD, sequence
        return _date_ok(text[8:10], text[10:12])
    return text[6:8] in ("18", "19", "20") and _date_ok(text[10:12], text[12:14])


def cn_id_check_ok(text: str) -> bool:
    """Whether an 18-character ID's last character is its ISO 7064 check character."""
    s = sum(int(c) * w for c, w in zip(text[:17], _ID_WEIGHTS, strict=True))
    return _ID_CHECK[s % 11] == text[17].upper()


def _date_ok(month: str, day: str) -> bool:
    return 1 <= int(month) <= 12 and 1 <= int(day) <= 31


def _card(m: re.Match) -> str:
    digits = re.sub(r"[ -]", "", m.group(0))
    return "<card>" if 13 <= len(digits) <= 19 and luhn_ok(digits) else m.group(0)


def _cn_id(m: re.Match) -> str:
    return "<id>" if cn_id_ok(m.group(0)) else m.group(0)


def mask(text: str) -> str:
    """``text`` with e-mail addresses, bank-card, ID and phone numbers replaced by
    ``<email>``, ``<card>``, ``<id>`` and ``<phone>``."""
    text = EMAIL.sub("<email>", text)
    text = CN_ID.sub(_cn_id, text)  # before cards: an 18-digit ID may pass Luhn by chance
    text = CARD.sub(_card, text)
    text = SSN.sub("<id>", text)
    text = HK_ID.sub("<id>", text)
    for p in PHONES:
        text = p.sub("<phone>", text)
    return text
