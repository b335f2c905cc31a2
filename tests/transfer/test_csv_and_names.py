"""patients.csv as Japanese Excel writes it, and names every file system accepts (pure: no database)."""

from __future__ import annotations

import uuid
from datetime import date
from pathlib import Path

from chairside.transfer import csvfile
from chairside.transfer.names import import_media_id, parse_patient_folder, safe_component, unique
from tests.transfer.conftest import CSV_SJIS


def test_shift_jis_csv_with_a_broken_row_keeps_the_good_rows(tmp_path: Path) -> None:
    path = tmp_path / "patients.csv"
    path.write_bytes(CSV_SJIS)
    rows, errors, encoding = csvfile.read_patients(path)
    assert encoding == "cp932"
    assert set(rows) == {"00123", "00456"}
    assert rows["00123"].name == "山田 太郎" and rows["00123"].birth_date == date(1980, 4, 1)
    assert rows["00456"].sex == "female" and rows["00456"].birth_date == date(1985, 7, 3)
    assert [(e.line, "cp932" in e.reason or "日付" in e.reason) for e in errors] == [(3, True), (4, True)]


def test_utf8_with_bom_without_header_and_injected_cells(tmp_path: Path) -> None:
    path = tmp_path / "p.csv"
    path.write_bytes(csvfile.BOM + "0001,'=1+2,イチ,2001年2月3日,M\r\n0002,,,令和元年5月1日,\r\n,x,y,,\r\n"
                     "0001,dup,dup,,\r\n".encode())
    rows, errors, encoding = csvfile.read_patients(path)
    assert encoding == "utf-8"
    assert rows["0001"].name == "=1+2" and rows["0001"].birth_date == date(2001, 2, 3)  # safe_cell read back
    assert rows["0002"].birth_date == date(2019, 5, 1) and rows["0002"].sex == "unknown"
    assert [e.line for e in errors] == [3, 4]  # no chart number; chart number repeated


def test_a_note_column_with_line_breaks_is_read_whole(tmp_path: Path) -> None:
    """備考 (or メモ / note) is the patient's note; Excel quotes a cell with line breaks over several lines."""
    path = tmp_path / "patients.csv"
    path.write_bytes(csvfile.BOM + 'カルテ番号,氏名,備考,電話\r\n0001,山田,"ペニシリン\r\n""禁忌""",03-1234\r\n'
                     '0002,佐藤,,090\r\n0003,鈴木,"閉じない\r\n'.encode())
    rows, errors, _ = csvfile.read_patients(path)
    assert rows["0001"].note == 'ペニシリン\n"禁忌"' and rows["0001"].extra == {"電話": "03-1234"}
    assert rows["0002"].note == "" and "0003" not in rows
    assert [(e.line, "引用符" in e.reason) for e in errors] == [(5, True)]


def test_render_makes_every_formula_inert() -> None:
    out = csvfile.render(["a"], [["=SUM(A1)"], ["+81 3"], ["@x"], ["-1"], ["plain"]]).decode("utf-8-sig")
    assert out.splitlines() == ["a", "'=SUM(A1)", "'+81 3", "'@x", "'-1", "plain"]


def test_names_are_safe_on_windows_and_macos() -> None:
    assert safe_component('A:12*3 <x>?"|/\\') == "A_12_3 _x______"
    assert safe_component("CON") == "_CON" and safe_component("nul.txt") == "_nul.txt"
    assert safe_component("山田　太郎. ") == "山田 太郎"
    assert safe_component("ガ") == "ガ"  # decomposed (macOS) → composed
    assert len(safe_component("長" * 500)) == 120
    taken: set[str] = set()
    assert [unique(n, taken) for n in ("a/1.mp4", "a/1.MP4", "a/1.mp4")] == ["a/1.mp4", "a/1_2.MP4", "a/1_3.mp4"]


def test_patient_folders_and_media_ids() -> None:
    assert parse_patient_folder("00123 山田 太郎") == ("00123", "山田 太郎")
    assert parse_patient_folder("00123　山田太郎") == ("00123", "山田太郎")
    assert parse_patient_folder("00123_山田太郎") == ("00123", "山田太郎")
    assert parse_patient_folder("A:12*3") == ("A:12*3", "")
    clinic = uuid.uuid4()
    a = import_media_id(clinic, "00123/rec.mp4", "ab" * 32)
    assert a == import_media_id(clinic, "00123/rec.mp4", "ab" * 32)
    assert a != import_media_id(clinic, "00456/rec.mp4", "ab" * 32) != import_media_id(uuid.uuid4(), "00123/rec.mp4",
                                                                                        "ab" * 32)


def test_an_import_adds_teeth_and_tags_and_writes_a_note_only_where_there_is_none() -> None:
    from chairside.transfer.importer import Additions, additions

    assert additions([16], ["術前"], "", [17, 16], ["術前", " 説明用 "], "メモ") == Additions(
        [16, 17], ["術前", "説明用"], "メモ")
    nothing = Additions(None, None, None)
    assert additions([16, 17], ["術後", "術前"], "先生のメモ", [16], ["術前"], "古いメモ") == nothing
    assert additions([], [], "", [], [], "  ") == nothing  # a blank note is no note
