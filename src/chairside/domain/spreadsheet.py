"""Cells of CSV files that people open in a spreadsheet: no formula ever runs from our data.

A cell that begins with `=`, `+`, `-`, `@`, a tab or a carriage return is read by Excel, LibreOffice
and Google Sheets as a formula (CSV injection). OWASP's advice, followed here: prefix such a cell
with a single quote, so it shows as the text it is. Every CSV Chairside writes for people goes
through `safe_cell` (one place for the rule); CSV read back by Chairside strips the quote with
`unsafe_cell`.
"""

from __future__ import annotations

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(value: object) -> str:
    """The text of a cell, made inert: `'=1+2` for `=1+2`; numbers and plain text unchanged."""
    text = "" if value is None else str(value)
    if text.startswith(FORMULA_STARTS):
        return "'" + text
    return text


def unsafe_cell(text: str) -> str:
    """The value `safe_cell` made inert, back (for CSV files Chairside reads again: an export imported)."""
    if text.startswith("'") and text[1:].startswith(FORMULA_STARTS):
        return text[1:]
    return text
