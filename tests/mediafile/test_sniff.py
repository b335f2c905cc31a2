from __future__ import annotations

import io
import struct
import zipfile
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chairside.mediafile import Sniffed, UnsupportedMedia, sniff, sniff_head
from chairside.mediafile.generate import make_heic, make_jpeg, make_png, make_video


def _box(box_type: bytes, payload: bytes = b"") -> bytes:
    return struct.pack(">I", 8 + len(payload)) + box_type + payload


def _ftyp(major: bytes, *compatible: bytes) -> bytes:
    return _box(b"ftyp", major + b"\x00\x00\x02\x00" + b"".join(compatible))


def test_generated_mp4_is_sniffed_as_mp4_video(clip_1080p: Path) -> None:
    assert sniff(clip_1080p) == Sniffed("video", "video/mp4", "mp4")


def test_mp4_with_index_at_end_is_sniffed_as_mp4_video(clip_moov_at_end: Path) -> None:
    assert sniff(clip_moov_at_end).mime == "video/mp4"


def test_quicktime_mov_is_sniffed_as_quicktime(tmp_path: Path) -> None:
    path = make_video(tmp_path / "a.mov", seconds=0.2, width=64, height=48, container_format="mov")
    assert sniff(path) == Sniffed("video", "video/quicktime", "mov")


def test_jpeg_png_and_heic_are_sniffed_as_images(tmp_path: Path) -> None:
    jpeg = make_jpeg(tmp_path / "a.jpg", width=64, height=48)
    png = make_png(tmp_path / "a.png", width=64, height=48)
    heic = make_heic(tmp_path / "a.heic", width=64, height=48)
    assert sniff(jpeg) == Sniffed("image", "image/jpeg", "jpg")
    assert sniff(png) == Sniffed("image", "image/png", "png")
    assert sniff(heic) == Sniffed("image", "image/heic", "heic")


def test_type_comes_from_bytes_not_from_the_file_name(tmp_path: Path) -> None:
    jpeg = make_jpeg(tmp_path / "photo.jpg", width=64, height=48)
    renamed = tmp_path / "recording.mp4"
    renamed.write_bytes(jpeg.read_bytes())
    assert sniff(renamed).mime == "image/jpeg"


def test_heif_still_with_generic_mif1_brand_is_an_image_not_a_video() -> None:
    head = _ftyp(b"mif1", b"mif1", b"miaf") + _box(b"meta", b"\x00" * 24)
    assert sniff_head(head).mime == "image/heic"


def test_mp4_that_lists_mif1_but_carries_a_movie_is_a_video() -> None:
    head = _ftyp(b"isom", b"isom", b"mif1") + _box(b"moov", b"\x00" * 24)
    assert sniff_head(head).mime == "video/mp4"


@pytest.mark.parametrize(
    ("head", "looks_like"),
    [
        (b"", "an empty file"),
        ("歯科メモ: これは写真ではありません\n".encode() * 40, "a text file"),
        ("歯科メモ\r\n".encode("cp932") * 40, "a text file"),
        (b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n", "a PDF document"),
        (b"GIF89a\x10\x00\x10\x00\x80\x00\x00", "a GIF image"),
        (b"<!DOCTYPE html><html><body>hi</body></html>", "a web page (HTML)"),
        (b"RIFF\x00\x00\x00\x00WEBPVP8 ", "a WebP image"),
        (b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01webm", "a Matroska or WebM video"),
        (b"\x00" * 128 + b"DICM" + b"\x02\x00", "a DICOM medical image"),
        (_ftyp(b"M4A ", b"M4A ", b"isom"), "a sound recording (M4A)"),
        (_ftyp(b"avif", b"avif", b"mif1") + _box(b"meta"), "an AVIF image"),
    ],
    ids=["empty", "text", "shift-jis", "pdf", "gif", "html", "webp", "webm", "dicom", "m4a",
         "avif"],
)  # fmt: skip
def test_non_media_is_refused_naming_what_it_looks_like(
    tmp_path: Path, head: bytes, looks_like: str
) -> None:
    path = tmp_path / "upload.jpg"
    path.write_bytes(head)
    with pytest.raises(UnsupportedMedia) as caught:
        sniff(path)
    assert f"it looks like {looks_like}" in caught.value.message
    assert "Supported: MP4/MOV videos" in caught.value.message


def test_zip_archive_is_refused_as_zip(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("scan.jpg", b"\xff\xd8\xff")
    path = tmp_path / "photos.mp4"
    path.write_bytes(buffer.getvalue())
    with pytest.raises(UnsupportedMedia, match="a ZIP archive"):
        sniff(path)


def test_unrecognisable_binary_is_refused_without_guessing() -> None:
    with pytest.raises(UnsupportedMedia) as caught:
        sniff_head(bytes(range(256)) * 4)
    assert "looks like" not in caught.value.message


def test_sniff_reads_only_the_head_of_a_large_file(tmp_path: Path) -> None:
    path = tmp_path / "big.mp4"
    with path.open("wb") as f:
        f.write(_ftyp(b"isom", b"isom", b"avc1") + _box(b"free"))
        f.truncate(3 << 30)  # sparse: 3 GiB that would be slow to read
    assert sniff(path).mime == "video/mp4"


@given(st.binary(max_size=4096))
def test_arbitrary_bytes_are_either_recognised_or_refused(head: bytes) -> None:
    message: str | None = None
    try:
        result = sniff_head(head)
    except UnsupportedMedia as refused:
        message = refused.message
    else:
        assert result.kind in ("video", "image")
    assert message is None or message.startswith("This file is not a photo or video")
