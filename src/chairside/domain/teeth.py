"""Tooth numbers: FDI two-digit numbering (ISO 3950), stored; and the Japanese Zsigmondy–Palmer display.

FDI (the stored form, and the default display). The first digit is the quadrant, the second the tooth's
place counted from the midline:

- permanent teeth: quadrants 1 upper right, 2 upper left, 3 lower left, 4 lower right (the patient's right
  and left); teeth 1 (central incisor) to 8 (third molar): 11–18, 21–28, 31–38, 41–48 (32 numbers);
- deciduous teeth: quadrants 5 to 8 in the same order; teeth 1 to 5: 51–55, 61–65, 71–75, 81–85 (20).

Every other number (10, 19, 56, 90, 9, 100…) is not a tooth.

Zsigmondy–Palmer, as Japanese charts and records write it (歯式): the mouth is drawn as a cross seen from
the front, so the patient's right is on the reader's left; a tooth is its place from the midline (1–8,
deciduous A–E) with the two lines of the cross that bound its quadrant. The vertical line stands on the
side of the midline, the horizontal line between the arches:

    右上 (upper right, FDI 1x/5x)  "6┘"     左上 (upper left, 2x/6x)   "└6"
    右下 (lower right, 4x/8x)      "6┐"     左下 (lower left, 3x/7x)   "┌6"

so 16 is "6┘" (read 右上6番), 21 is "└1", 36 is "┌6", 55 is "E┘" (右上E). Spoken and in running text
the quadrant is said in words: 右上6, 左下E. Deciduous teeth are written with the capital letters A–E
(Palmer's letters; Zsigmondy's own Roman numerals I–V are not used here). The marks are the box-drawing
characters U+2518 ┘, U+2514 └, U+2510 ┐, U+250C ┌, which Japanese fonts draw at full width.

Pure: no I/O, no framework (import contract in pyproject.toml).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

Notation = Literal["fdi", "palmer"]
NOTATIONS: tuple[Notation, ...] = ("fdi", "palmer")
DEFAULT_NOTATION: Notation = "fdi"

# quadrant → how many teeth it has
_QUADRANT_SIZE = {1: 8, 2: 8, 3: 8, 4: 8, 5: 5, 6: 5, 7: 5, 8: 5}

PERMANENT: tuple[int, ...] = tuple(q * 10 + n for q in (1, 2, 3, 4) for n in range(1, 9))
DECIDUOUS: tuple[int, ...] = tuple(q * 10 + n for q in (5, 6, 7, 8) for n in range(1, 6))
ALL: tuple[int, ...] = PERMANENT + DECIDUOUS
_VALID = frozenset(ALL)

MAX_PER_ITEM = 32  # a full permanent dentition; a set of more is refused

# The charts as seen facing the patient (the patient's right on the left): upper arch, then lower arch.
CHART_PERMANENT: tuple[tuple[int, ...], tuple[int, ...]] = (
    (18, 17, 16, 15, 14, 13, 12, 11, 21, 22, 23, 24, 25, 26, 27, 28),
    (48, 47, 46, 45, 44, 43, 42, 41, 31, 32, 33, 34, 35, 36, 37, 38),
)
CHART_DECIDUOUS: tuple[tuple[int, ...], tuple[int, ...]] = (
    (55, 54, 53, 52, 51, 61, 62, 63, 64, 65),
    (85, 84, 83, 82, 81, 71, 72, 73, 74, 75),
)

_LETTERS = "ABCDE"
# quadrant (1–4, deciduous folded onto permanent) → (mark, mark after the tooth?)
_MARKS = {1: ("┘", True), 2: ("└", False), 3: ("┌", False), 4: ("┐", True)}
_WORDS_JA = {1: "右上", 2: "左上", 3: "左下", 4: "右下"}
_WORDS_EN = {1: "upper right", 2: "upper left", 3: "lower left", 4: "lower right"}


class InvalidTooth(ValueError):
    """Not an FDI tooth number."""


def is_tooth(value: object) -> bool:
    """True for an FDI tooth number (an int, not a bool, in one of the eight quadrants' ranges)."""
    return isinstance(value, int) and not isinstance(value, bool) and value in _VALID


def check(value: object) -> int:
    """The tooth number; InvalidTooth for anything else."""
    if not is_tooth(value):
        raise InvalidTooth(f"{value!r} is not an FDI tooth number (11–48 permanent, 51–85 deciduous)")
    assert isinstance(value, int)
    return value


def clean(values: Iterable[object]) -> list[int]:
    """A set of teeth: each checked, each once, in FDI order; InvalidTooth naming the first bad one, or when
    there are more than MAX_PER_ITEM."""
    teeth = sorted({check(v) for v in values})
    if len(teeth) > MAX_PER_ITEM:
        raise InvalidTooth(f"at most {MAX_PER_ITEM} teeth per item")
    return teeth


def quadrant(tooth: int) -> int:
    """1–8, as in the FDI number."""
    return check(tooth) // 10


def place(tooth: int) -> int:
    """The tooth's place from the midline: 1–8 (permanent) or 1–5 (deciduous)."""
    return check(tooth) % 10


def is_deciduous(tooth: int) -> bool:
    return quadrant(tooth) >= 5


def is_upper(tooth: int) -> bool:
    return quadrant(tooth) in (1, 2, 5, 6)


def is_patients_right(tooth: int) -> bool:
    return quadrant(tooth) in (1, 4, 5, 8)


def _side(tooth: int) -> int:
    """The quadrant folded onto 1–4 (deciduous 5–8 onto 1–4)."""
    q = quadrant(tooth)
    return q - 4 if q > 4 else q


def _symbol(tooth: int) -> str:
    """1–8, or A–E for a deciduous tooth."""
    n = place(tooth)
    return _LETTERS[n - 1] if is_deciduous(tooth) else str(n)


def palmer(tooth: int) -> str:
    """The Zsigmondy–Palmer form with its quadrant mark, as Japanese charts write it: 16 → "6┘", 21 → "└1",
    48 → "8┐", 36 → "┌6", 55 → "E┘"."""
    mark, after = _MARKS[_side(tooth)]
    symbol = _symbol(tooth)
    return symbol + mark if after else mark + symbol


def words_ja(tooth: int) -> str:
    """The tooth as said in a Japanese clinic: 16 → "右上6", 75 → "左下E"."""
    return _WORDS_JA[_side(tooth)] + _symbol(tooth)


def words_en(tooth: int) -> str:
    """16 → "upper right 6", 75 → "lower left E" (the patient's right and left)."""
    return f"{_WORDS_EN[_side(tooth)]} {_symbol(tooth)}"


def label(tooth: int, notation: str = DEFAULT_NOTATION) -> str:
    """The short label shown on a chip: "16" (FDI) or "6┘" (Zsigmondy–Palmer)."""
    if notation == "palmer":
        return palmer(tooth)
    if notation == "fdi":
        return str(check(tooth))
    raise ValueError(f"unknown tooth notation {notation!r} (one of {', '.join(NOTATIONS)})")


def from_palmer(text: str) -> int:
    """The FDI number of a Zsigmondy–Palmer form ("6┘", "└E") or of its Japanese words ("右上6", "左下E");
    InvalidTooth otherwise. Full-width digits and letters are accepted (６┘, 右上Ｅ)."""
    raw = "".join(text.split()).translate(_FULL_WIDTH).removesuffix("番")
    for side, (mark, after) in _MARKS.items():
        words = _WORDS_JA[side]
        if raw.startswith(words):
            symbol = raw[len(words):]
        elif after and raw.endswith(mark):
            symbol = raw[:-1]
        elif not after and raw.startswith(mark):
            symbol = raw[1:]
        else:
            continue
        if len(symbol) == 1 and symbol in "12345678":
            return side * 10 + int(symbol)
        if len(symbol) == 1 and symbol.upper() in _LETTERS:
            return (side + 4) * 10 + _LETTERS.index(symbol.upper()) + 1
        break
    raise InvalidTooth(f"{text!r} is not a tooth in Zsigmondy–Palmer form (e.g. 6┘, └1, 右上6, 左下E)")


_FULL_WIDTH = str.maketrans("０１２３４５６７８９ＡＢＣＤＥａｂｃｄｅ", "0123456789ABCDEabcde")
