"""The tooth numbering (domain/teeth.py) and the note text rules (domain/notes.py): every FDI number, its
Zsigmondy–Palmer form as Japanese charts write it, and bad input."""

from __future__ import annotations

import pytest

from chairside.domain import notes, teeth
from chairside.domain.text import UnsafeText

# Each quadrant: its FDI first digit, its Japanese words, its mark and whether the mark follows the tooth.
QUADRANTS = {1: ("右上", "┘", True), 2: ("左上", "└", False), 3: ("左下", "┌", False), 4: ("右下", "┐", True),
             5: ("右上", "┘", True), 6: ("左上", "└", False), 7: ("左下", "┌", False), 8: ("右下", "┐", True)}


def _expected_symbol(number: int) -> str:
    q, n = divmod(number, 10)
    return "ABCDE"[n - 1] if q >= 5 else str(n)


def test_there_are_32_permanent_and_20_deciduous_numbers() -> None:
    assert len(teeth.PERMANENT) == 32 and len(teeth.DECIDUOUS) == 20 and len(set(teeth.ALL)) == 52
    assert teeth.PERMANENT[0] == 11 and teeth.PERMANENT[-1] == 48
    assert teeth.DECIDUOUS[0] == 51 and teeth.DECIDUOUS[-1] == 85
    assert sorted(n for row in teeth.CHART_PERMANENT for n in row) == sorted(teeth.PERMANENT)
    assert sorted(n for row in teeth.CHART_DECIDUOUS for n in row) == sorted(teeth.DECIDUOUS)


@pytest.mark.parametrize("number", range(0, 100))
def test_every_two_digit_number_is_a_tooth_exactly_when_fdi_says_so(number: int) -> None:
    q, n = divmod(number, 10)
    valid = (1 <= q <= 4 and 1 <= n <= 8) or (5 <= q <= 8 and 1 <= n <= 5)
    assert teeth.is_tooth(number) is valid
    if not valid:
        with pytest.raises(teeth.InvalidTooth):
            teeth.check(number)
        with pytest.raises(teeth.InvalidTooth):
            teeth.palmer(number)
        return
    words, mark, after = QUADRANTS[q]
    symbol = _expected_symbol(number)
    assert teeth.palmer(number) == (symbol + mark if after else mark + symbol)
    assert teeth.words_ja(number) == words + symbol
    assert teeth.label(number, "fdi") == str(number)
    assert teeth.label(number, "palmer") == teeth.palmer(number)
    assert teeth.is_deciduous(number) is (q >= 5)
    assert teeth.is_upper(number) is (q in (1, 2, 5, 6))
    assert teeth.is_patients_right(number) is (q in (1, 4, 5, 8))
    # Both written forms read back to the number.
    assert teeth.from_palmer(teeth.palmer(number)) == number
    assert teeth.from_palmer(teeth.words_ja(number)) == number
    assert teeth.from_palmer(teeth.words_ja(number) + "番") == number


def test_the_forms_japanese_charts_write() -> None:
    assert [teeth.palmer(n) for n in (16, 21, 36, 48, 55, 61, 75, 83)] == [
        "6┘", "└1", "┌6", "8┐", "E┘", "└A", "┌E", "C┐"]
    assert [teeth.words_ja(n) for n in (16, 21, 36, 48, 55, 75)] == [
        "右上6", "左上1", "左下6", "右下8", "右上E", "左下E"]
    assert teeth.words_en(16) == "upper right 6" and teeth.words_en(75) == "lower left E"
    assert teeth.from_palmer("６┘") == 16 and teeth.from_palmer("右下ｅ") == 85 and teeth.from_palmer(" └ 1 ") == 21


@pytest.mark.parametrize("bad", [0, 9, 10, 19, 20, 29, 30, 39, 40, 49, 50, 56, 60, 66, 76, 86, 90, 91, 99, 100, 111,
                                 -16, True, False, "16", 16.0, None, [16]])
def test_bad_numbers_are_refused(bad: object) -> None:
    assert not teeth.is_tooth(bad)
    with pytest.raises(teeth.InvalidTooth):
        teeth.check(bad)
    with pytest.raises(teeth.InvalidTooth):
        teeth.clean([11, bad])


@pytest.mark.parametrize("bad", ["", "6", "┘", "6└", "9┘", "F┘", "右上9", "右上F", "上6", "66┘", "右上", "16"])
def test_bad_palmer_forms_are_refused(bad: str) -> None:
    with pytest.raises(teeth.InvalidTooth):
        teeth.from_palmer(bad)


def test_a_set_is_sorted_each_once_and_bounded() -> None:
    assert teeth.clean([17, 16, 16, 55]) == [16, 17, 55]
    assert teeth.clean([]) == []
    assert teeth.clean(teeth.PERMANENT) == list(teeth.PERMANENT)  # a full permanent dentition: 32
    with pytest.raises(teeth.InvalidTooth):
        teeth.clean([*teeth.PERMANENT, 51])
    with pytest.raises(ValueError, match="unknown tooth notation"):
        teeth.label(16, "universal")


def test_a_note_is_nfc_multi_line_trimmed_and_bounded() -> None:
    decomposed = "か\u3099"  # が as か + combining mark
    assert notes.clean_note(f"\r\n  \n右下6 {decomposed}  \r\n\t根管治療\r\n\n") == "右下6 が\n\t根管治療"
    assert notes.clean_note("") == "" and notes.clean_note("  \n \n") == ""
    assert notes.clean_note("あ" * notes.MAX_CHARS) == "あ" * notes.MAX_CHARS
    with pytest.raises(notes.NoteTooLong):
        notes.clean_note("あ" * (notes.MAX_CHARS + 1))
    for unsafe in ("photo\u202egpj.exe", "bell\x07", "\u200b\u200b", "a\x00b"):
        with pytest.raises(UnsafeText):
            notes.clean_note(unsafe)
