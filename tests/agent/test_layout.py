"""The layouts, the sidecar and path handling, with Windows paths tested as PureWindowsPath on any machine."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import PurePosixPath, PureWindowsPath

import pytest

from chairside.agent.layout import (
    LayoutError,
    Sidecar,
    is_candidate,
    parse_sidecar,
    relative_parts,
    resolve,
    sidecar_candidates,
    split_folder,
    windows_safe,
)


@pytest.mark.parametrize(("root", "path", "parts"), [
    (r"C:\Capture Data\診療", r"C:\Capture Data\診療\00123\rec.mp4", ("00123", "rec.mp4")),
    (r"C:\Capture Data\診療", r"c:\capture data\診療\00123\REC.MP4", ("00123", "REC.MP4")),  # NTFS: no case
    (r"\\clinic-nas\share\cap", r"\\CLINIC-NAS\share\cap\00123 山田 太郎\2026-12-07\a.jpg",
     ("00123 山田 太郎", "2026-12-07", "a.jpg")),
    (r"D:\cap", r"D:\capture\00123\rec.mp4", None),  # a sibling whose name starts alike is not inside
    (r"D:\cap", r"E:\cap\00123\rec.mp4", None),  # another drive
    (r"D:\cap", r"D:\cap", None),
])
def test_windows_paths_below_the_watch_folder(root: str, path: str, parts: tuple[str, ...] | None) -> None:
    assert relative_parts(PureWindowsPath(root), PureWindowsPath(path)) == parts


def test_posix_paths_keep_case_and_normalise_decomposed_names() -> None:
    root = PurePosixPath("/srv/キャプチャ")
    assert relative_parts(root, PurePosixPath("/srv/キャプチャ/00123/rec.mp4")) == ("00123", "rec.mp4")
    assert relative_parts(root, PurePosixPath("/SRV/キャプチャ/00123/rec.mp4")) is None
    decomposed = "/srv/キャフ\u309aチャ/00123/rec.mp4"  # macOS writes プ as フ + combining mark
    assert relative_parts(root, PurePosixPath(decomposed)) == ("00123", "rec.mp4")
    assert relative_parts(root, PurePosixPath("/srv/キャフ\u309aチャ/00123 山田/rec.mp4")) == ("00123 山田", "rec.mp4")


@pytest.mark.parametrize(("parts", "ok"), [
    (("00123", "rec.mp4"), True),
    (("rec.mp4",), True),
    ((".chairside", "state.db"), False),
    ((".sent", "00123", "rec.mp4"), False),
    (("00123", "rec.mp4.json"), False),  # a sidecar
    (("00123", "rec.mp4.tmp"), False),
    (("00123", "rec.mp4.part"), False),
    (("00123", "~$notes.docx"), False),
    (("00123", ".hidden.mp4"), False),
    (("00123", "Thumbs.db"), False),
    (("00123", "desktop.ini"), False),
])
def test_which_files_are_sent(parts: tuple[str, ...], ok: bool) -> None:
    assert is_candidate(parts) is ok


@pytest.mark.parametrize(("folder", "chart", "name"), [
    ("00123", "00123", None),
    ("00123 山田 太郎", "00123", "山田 太郎"),
    ("00123\u3000山田\u3000太郎", "00123", "山田\u3000太郎"),  # full-width spaces, as Japanese IMEs type
    ("A:12<3>", "A:12<3>", None),  # characters Windows forbids are kept: they are the chart number
    ("  0042  ", "0042", None),
])
def test_chart_folder_names(folder: str, chart: str, name: str | None) -> None:
    assert split_folder(folder) == (chart, name)


def test_sidecar_is_read_with_its_aliases_and_dates() -> None:
    s = parse_sidecar('{"chart_number": " 00123 ", "name": "山田 太郎", "name_kana": "ヤマダ タロウ", '
                      '"birth_date": "1980-04-01", "sex": "male", "captured_at": "2026-12-07T10:30:00+09:00"}')
    assert s.chart_no == "00123" and s.name == "山田 太郎" and s.kana == "ヤマダ タロウ"
    assert s.birth_date == date(1980, 4, 1) and s.sex == "male"
    assert s.captured_at == datetime.fromisoformat("2026-12-07T10:30:00+09:00")
    assert parse_sidecar('{"chart_no": 42, "sex": "dog"}') == Sidecar(chart_no="42", sex="unknown")


@pytest.mark.parametrize("text", ['{"chart_no": "1"', "[1, 2]", '{"chart_no": "1", "birth_date": "1980/04/01"}'])
def test_a_broken_or_half_written_sidecar_waits(text: str) -> None:
    with pytest.raises(LayoutError) as e:
        parse_sidecar(text)
    assert e.value.wait and e.value.ja and e.value.en


def test_sidecar_names() -> None:
    assert sidecar_candidates(PureWindowsPath(r"C:\cap\1\rec.mp4")) == [
        PureWindowsPath(r"C:\cap\1\rec.mp4.json"), PureWindowsPath(r"C:\cap\1\rec.json")]


def test_resolve_by_folder_and_sidecar() -> None:
    assert resolve("folder", ("00123 山田 太郎", "rec.mp4"), None).name == "山田 太郎"
    assert resolve("folder", ("00123", "sub", "rec.mp4"), None).chart_no == "00123"
    side = Sidecar(chart_no="00999", name="佐藤 花子", kana="サトウ ハナコ")
    over = resolve("folder", ("00123 山田 太郎", "rec.mp4"), side)
    assert (over.chart_no, over.name, over.kana) == ("00999", "佐藤 花子", "サトウ ハナコ")
    # The sidecar names the chart but not the person: the folder's name is not someone else's.
    assert resolve("folder", ("00123 山田 太郎", "rec.mp4"), Sidecar(chart_no="00999")).name is None
    assert resolve("sidecar", ("rec.mp4",), side).chart_no == "00999"


def test_resolve_refusals_say_what_to_do() -> None:
    with pytest.raises(LayoutError) as loose:
        resolve("folder", ("rec.mp4",), None)  # no chart folder: someone must move it
    assert not loose.value.wait and "フォルダ" in loose.value.ja
    with pytest.raises(LayoutError) as waiting:
        resolve("sidecar", ("rec.mp4",), None)  # the sidecar may still come
    assert waiting.value.wait
    with pytest.raises(LayoutError):
        resolve("sidecar", ("rec.mp4",), Sidecar(name="x"))
    with pytest.raises(ValueError, match="unknown layout"):
        resolve("flat", ("rec.mp4",), None)


@pytest.mark.parametrize(("name", "safe"), [
    ("A:12<3>", "A_12_3_"), ("rec?.mp4", "rec_.mp4"), ("CON", "_CON"), ("nul.txt", "_nul.txt"),
    ("trailing. ", "trailing"), ("山田 太郎", "山田 太郎"), ("a\tb", "a_b"),
])
def test_names_written_by_the_agent_are_valid_on_windows(name: str, safe: str) -> None:
    assert windows_safe(name) == safe
