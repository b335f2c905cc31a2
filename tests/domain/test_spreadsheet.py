"""CSV cells for spreadsheets: formulas are made inert, and an export read back gets its values again."""

from __future__ import annotations

import pytest

from chairside.domain.spreadsheet import safe_cell, unsafe_cell


@pytest.mark.parametrize("value", ["=1+2", "+81-3-1234", "-5", "@SUM(A1)", "\tx", "\r=cmd"])
def test_a_cell_that_a_spreadsheet_would_run_is_quoted(value: str) -> None:
    assert safe_cell(value) == "'" + value
    assert unsafe_cell(safe_cell(value)) == value


@pytest.mark.parametrize("value", ["山田 太郎", "01001", "2026-12-07", "", "'quoted already", "a=b"])
def test_plain_text_is_left_as_it_is(value: str) -> None:
    assert safe_cell(value) == value
    assert unsafe_cell(value) == value


def test_none_and_numbers_become_text() -> None:
    assert safe_cell(None) == ""
    assert safe_cell(42) == "42"
    assert safe_cell(-3) == "'-3"
