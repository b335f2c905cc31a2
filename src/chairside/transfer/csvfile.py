"""patients.csv: read as Japanese Excel writes it (UTF-8 with or without BOM, or Shift_JIS/cp932), written for Excel.

Reading never gives up on the whole file for one bad row: each row that cannot be used (bytes
that are not text in the file's encoding, no chart number, a date that is not a date, a sex
we do not know) is reported with its line number and the reason, and the other rows are used.
Headers are recognised in Japanese or English (`カルテ番号`/`chart_no`, `氏名`/`name`,
`フリガナ`/`カナ`/`name_kana`, `生年月日`/`birth_date`, `性別`/`sex`, and the optional `メモ`/`備考`/`note`,
the patient's note); a file without a header row is read in that column order. A quoted cell may hold
line breaks (a note's). Cells written by Chairside (`safe_cell`) are read back with `unsafe_cell`.
"""

from __future__ import annotations

import csv
import io
import re
import unicodedata
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from chairside.domain.spreadsheet import safe_cell, unsafe_cell

BOM = b"\xef\xbb\xbf"
COLUMNS = ("chart_no", "name", "name_kana", "birth_date", "sex")
HEADERS = {
    "ja": ("カルテ番号", "氏名", "フリガナ", "生年月日", "性別"),
    "en": COLUMNS,
}
_ALIASES = {
    "chart_no": {"chart_no", "chart", "chartno", "chart number", "カルテ番号", "カルテno", "カルテ", "患者番号",
                 "患者id"},
    "name": {"name", "patient_name", "氏名", "名前", "患者名", "患者氏名"},
    "name_kana": {"name_kana", "kana", "フリガナ", "ふりがな", "カナ", "カナ氏名", "よみ"},
    "birth_date": {"birth_date", "birthdate", "birthday", "生年月日", "誕生日"},
    "sex": {"sex", "gender", "性別"},
    "note": {"note", "notes", "メモ", "備考", "memo"},
}
_SEX = {"male": "male", "m": "male", "男": "male", "男性": "male", "1": "male",
        "female": "female", "f": "female", "女": "female", "女性": "female", "2": "female",
        "other": "other", "その他": "other",
        "unknown": "unknown", "": "unknown", "不明": "unknown", "0": "unknown", "9": "unknown"}
SEX_JA = {"male": "男", "female": "女", "other": "その他", "unknown": "不明"}
_ERAS = {"明治": 1867, "M": 1867, "大正": 1911, "T": 1911, "昭和": 1925, "S": 1925, "平成": 1988, "H": 1988,
         "令和": 2018, "R": 2018}


@dataclass(frozen=True)
class PatientRow:
    line: int
    chart_no: str
    name: str
    name_kana: str
    birth_date: date | None
    sex: str
    extra: dict[str, str]
    note: str = ""  # the patient's note (`メモ`/`備考`/`note`), imported when the patient has none


@dataclass(frozen=True)
class RowError:
    line: int
    reason: str


def decode_lines(raw: bytes) -> tuple[str, list[tuple[int, str | None]]]:
    """The encoding chosen and each physical line's text (None: not text in that encoding)."""
    if raw.startswith(BOM):
        encoding, raw = "utf-8", raw[len(BOM):]
    else:
        try:
            raw.decode("utf-8")
            encoding = "utf-8"
        except UnicodeDecodeError:
            encoding = "cp932"
            # A file that is mostly UTF-8 with one broken row is still UTF-8: count which decodes more lines.
            lines = raw.splitlines()
            ok_utf8 = sum(1 for ln in lines if _decodes(ln, "utf-8"))
            ok_sjis = sum(1 for ln in lines if _decodes(ln, "cp932"))
            if ok_utf8 > ok_sjis:
                encoding = "utf-8"
    out: list[tuple[int, str | None]] = []
    for n, line in enumerate(raw.splitlines(), start=1):
        try:
            out.append((n, line.decode(encoding)))
        except UnicodeDecodeError:
            out.append((n, None))
    return encoding, out


def _decodes(line: bytes, encoding: str) -> bool:
    try:
        line.decode(encoding)
        return True
    except UnicodeDecodeError:
        return False


def _fold(text: str) -> str:
    return unicodedata.normalize("NFKC", text).strip().lower()


def parse_date(text: str) -> date | None:
    """`1980-04-01`, `1980/4/1`, `19800401`, `1980年4月1日`, `S55.4.1`, `昭和55年4月1日`.

    Empty → None; anything else → ValueError.
    """
    t = unicodedata.normalize("NFKC", text).strip()
    if not t:
        return None
    m = re.fullmatch(r"(\d{4})[-/.年](\d{1,2})[-/.月](\d{1,2})日?", t) or re.fullmatch(r"(\d{4})(\d{2})(\d{2})", t)
    if m:
        return date(int(m.group(1)), int(m.group(2)), int(m.group(3)))
    m = re.fullmatch(r"(明治|大正|昭和|平成|令和|[MTSHR])\s*(\d{1,2}|元)[-/.年](\d{1,2})[-/.月](\d{1,2})日?", t,
                     re.IGNORECASE)
    if m:
        year = 1 if m.group(2) == "元" else int(m.group(2))
        return date(_ERAS[m.group(1).upper() if len(m.group(1)) == 1 else m.group(1)] + year, int(m.group(3)),
                    int(m.group(4)))
    raise ValueError(t)


def read_patients(path: Path) -> tuple[dict[str, PatientRow], list[RowError], str]:
    """The rows by chart number, the rows that could not be used, and the encoding found."""
    encoding, lines = decode_lines(path.read_bytes())
    errors: list[RowError] = []
    rows: dict[str, PatientRow] = {}
    columns: dict[str, int] | None = None
    header_seen = False
    open_row: tuple[int, str] | None = None  # a row whose quoted cell goes on to the next line (a note's line break)
    for n, text in lines:
        if text is None:
            errors.append(RowError(n, f"この行は {encoding} の文字として読めません / "
                                      f"this line is not valid {encoding} text"))
            open_row = None
            continue
        if open_row is not None:
            n, text = open_row[0], open_row[1] + "\n" + text
            open_row = None
        if text.count('"') % 2:
            open_row = (n, text)
            continue
        if not text.strip():
            continue
        try:
            cells = next(csv.reader(io.StringIO(text)))
        except (csv.Error, StopIteration):
            errors.append(RowError(n, "CSV として読めない行です / not a CSV row"))
            continue
        cells = [unsafe_cell(c.strip()) for c in cells]
        if not header_seen:
            header_seen = True
            found = {_canonical(c): i for i, c in enumerate(cells)}
            found.pop("", None)
            if "chart_no" in found:
                columns = found
                continue
            columns = {c: i for i, c in enumerate(COLUMNS)}
        assert columns is not None
        row, why = _row(n, cells, columns)
        if row is None:
            errors.append(RowError(n, why))
            continue
        if row.chart_no in rows:
            first = rows[row.chart_no].line
            errors.append(RowError(n, f"カルテ番号 {row.chart_no} が重複しています（{first} 行目を使用）/ "
                                      f"chart number {row.chart_no} repeated (line {first} used)"))
            continue
        rows[row.chart_no] = row
    if open_row is not None:
        errors.append(RowError(open_row[0], "引用符 \" が閉じられていません / a quote \" is never closed"))
    return rows, errors, encoding


def _canonical(header: str) -> str:
    h = _fold(header)
    for column, names in _ALIASES.items():
        if h in names:
            return column
    return h if h else ""


def _row(n: int, cells: list[str], columns: dict[str, int]) -> tuple[PatientRow | None, str]:
    def cell(name: str) -> str:
        i = columns.get(name)
        return cells[i] if i is not None and i < len(cells) else ""

    if len(cells) < min(len(columns), 2):
        return None, f"列が足りません（{len(cells)} 列）/ too few columns ({len(cells)})"
    chart = unicodedata.normalize("NFC", cell("chart_no")).strip()
    if not chart:
        return None, "カルテ番号が空です / the chart number is empty"
    if len(chart) > 40:
        return None, "カルテ番号が長すぎます（40 文字まで）/ the chart number is longer than 40 characters"
    try:
        birth = parse_date(cell("birth_date"))
    except ValueError:
        return None, f"生年月日「{cell('birth_date')}」が日付として読めません / birth date is not a date"
    sex = _SEX.get(_fold(cell("sex")))
    if sex is None:
        return None, f"性別「{cell('sex')}」が分かりません（男/女/不明）/ unknown sex value"
    known = {columns[c] for c in (*COLUMNS, "note") if c in columns}
    extra = {name: cells[i] for name, i in columns.items() if i not in known and i < len(cells)}
    return PatientRow(n, chart, unicodedata.normalize("NFC", cell("name")).strip(),
                      unicodedata.normalize("NFC", cell("name_kana")).strip(), birth, sex, extra,
                      unicodedata.normalize("NFC", cell("note"))), ""


def render(header: list[str], rows: list[list[object]]) -> bytes:
    """A CSV for Excel: UTF-8 with a BOM, CRLF, every cell through `safe_cell` (no formula ever runs)."""
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\r\n")
    writer.writerow([safe_cell(h) for h in header])
    for row in rows:
        writer.writerow([safe_cell(c) for c in row])
    return BOM + text.getvalue().encode("utf-8")


def render_rows(rows: list[list[object]]) -> bytes:
    """More rows of a CSV begun by `render` (no BOM, no header)."""
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\r\n")
    for row in rows:
        writer.writerow([safe_cell(c) for c in row])
    return text.getvalue().encode("utf-8")


def read_table(path: Path) -> list[dict[str, str]]:
    """A CSV Chairside wrote (UTF-8 with BOM, first row the header), as dicts; cells un-escaped."""
    text = path.read_bytes().removeprefix(BOM).decode("utf-8")
    reader = csv.reader(io.StringIO(text, newline=""))
    header = next(reader, [])
    return [{h: unsafe_cell(v) for h, v in zip(header, row, strict=False)} for row in reader if row]
