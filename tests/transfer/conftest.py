"""An SSD as clinics bring it: a folder per patient with real H.264 clips and photos, a Shift_JIS patients.csv."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from chairside.cli import app
from chairside.context import Context

# Shift_JIS as Japanese Excel writes it: line 3 holds bytes that are not Shift_JIS, line 4 a date that is no date.
CSV_SJIS = (
    "カルテ番号,氏名,フリガナ,生年月日,性別\r\n".encode("cp932")
    + "00123,山田 太郎,ヤマダ タロウ,S55.4.1,男\r\n".encode("cp932")
    + b"00999,\x82\xa0\xff\xfe,\x83\x41,1990-01-01,\x82\r\n"
    + "00777,壊れ 行,コワレ ギョウ,1990-13-45,女\r\n".encode("cp932")
    + "00456,佐藤 花子,サトウ ハナコ,1985/7/3,女\r\n".encode("cp932")
)


@dataclass
class Ssd:
    root: Path
    videos: int  # importable videos (the duplicate counted twice)
    photos: int


def make_ssd(root: Path, media_dir: Path) -> Ssd:
    """00123 山田太郎: clip, photo, 0-byte MP4, truncated MP4, a text file; 00456: clip2 and the same clip again
    (a duplicate under two patients); `A:12*3` a chart number Windows forbids; Thumbs.db everywhere."""
    a = root / "00123 山田太郎" / "2019"
    a.mkdir(parents=True)
    shutil.copy(media_dir / "clip.mp4", a / "rec 1.mp4")
    shutil.copy(media_dir / "photo.jpg", root / "00123 山田太郎" / "IMG_0001.jpg")
    (a / "empty.mp4").write_bytes(b"")
    shutil.copy(media_dir / "truncated.mp4", a / "cut.mp4")
    shutil.copy(media_dir / "notes.txt", a / "notes.txt")
    (a / "Thumbs.db").write_bytes(b"\0" * 10)
    b = root / "00456"
    b.mkdir()
    shutil.copy(media_dir / "clip2.mp4", b / "REC0002.MP4")
    shutil.copy(media_dir / "clip.mp4", b / "copy-of-rec1.mp4")
    c = root / "A:12*3"
    c.mkdir()
    shutil.copy(media_dir / "photo.png", c / "scan.png")
    (root / "patients.csv").write_bytes(CSV_SJIS)
    return Ssd(root, videos=3, photos=2)


@pytest.fixture
def ssd(tmp_path: Path, media_dir: Path) -> Ssd:
    return make_ssd(tmp_path / "ssd", media_dir)


@dataclass
class Result:
    exit_code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        """The last JSON document printed (the summary)."""
        text = self.stdout.strip()
        start = text.rfind("\n{")
        return json.loads(text[start + 1:] if start >= 0 else text)


def run(*args: str) -> Result:
    result = CliRunner().invoke(app, [*args, "--no-progress"])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return Result(result.exit_code, result.stdout, result.stderr)


def local(ctx: Context) -> list[str]:
    return ["--data", str(ctx.settings.data_dir), "--database-url", ctx.settings.database_url]
