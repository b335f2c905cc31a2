"""Tell what a file is from its first bytes, never from its name."""

from __future__ import annotations

import codecs
import os
from dataclasses import dataclass
from typing import Literal

from chairside.mediafile._isobmff import Ftyp, head_box_types, parse_ftyp
from chairside.mediafile.errors import UnsupportedMedia

HEAD_BYTES = 4096

MediaKind = Literal["video", "image"]


@dataclass(frozen=True, slots=True)
class Sniffed:
    kind: MediaKind
    mime: str
    ext: str


MP4 = Sniffed("video", "video/mp4", "mp4")
MOV = Sniffed("video", "video/quicktime", "mov")
JPEG = Sniffed("image", "image/jpeg", "jpg")
PNG = Sniffed("image", "image/png", "png")
HEIC = Sniffed("image", "image/heic", "heic")

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

_MP4_BRANDS = frozenset(
    {"isom", "iso2", "iso3", "iso4", "iso5", "iso6", "mp41", "mp42", "avc1", "M4V ", "M4VH",
     "M4VP", "mmp4", "XAVC"}
)  # fmt: skip
_QUICKTIME_BRANDS = frozenset({"qt  "})
# Brands that only HEIF/HEIC stills (and HEVC image sequences) carry.
_HEIF_BRANDS = frozenset(
    {"heic", "heix", "heim", "heis", "hevc", "hevx", "hevm", "hevs", "mif1", "mif2", "msf1"}
)
_HEIF_HEVC_BRANDS = _HEIF_BRANDS - {"mif1", "mif2", "msf1"}
_AVIF_BRANDS = frozenset({"avif", "avis", "avio"})
_AUDIO_BRANDS = frozenset({"M4A ", "M4B ", "M4P ", "F4A ", "F4B "})


def sniff(path: str | os.PathLike[str]) -> Sniffed:
    """Identify a stored file by content. Raises UnsupportedMedia for anything else."""
    with open(path, "rb") as f:
        head = f.read(HEAD_BYTES)
    return sniff_head(head)


def sniff_head(head: bytes) -> Sniffed:
    """Identify media from the first bytes of a file (at least the first 4 KiB if available).

    Useful before a file is complete, e.g. on the first chunk of an upload.
    """
    if not head:
        raise UnsupportedMedia.not_media("an empty file")
    if head.startswith(b"\xff\xd8\xff"):
        return JPEG
    if head.startswith(_PNG_SIGNATURE):
        return PNG
    ftyp = parse_ftyp(head)
    if ftyp is not None:
        return _classify_iso_media(ftyp, head)
    raise UnsupportedMedia.not_media(describe(head))


def _classify_iso_media(ftyp: Ftyp, head: bytes) -> Sniffed:
    brands = ftyp.brands
    major = ftyp.major
    if major in _AUDIO_BRANDS:
        raise UnsupportedMedia.not_media("a sound recording (M4A)")
    if brands & _AVIF_BRANDS and not brands & _HEIF_HEVC_BRANDS:
        raise UnsupportedMedia.not_media("an AVIF image")
    # HEIF stills and MP4 videos can share brands (mif1, isom, ...). A HEIF still keeps
    # its item metadata in a top-level 'meta' box right after 'ftyp'; a video has 'moov'
    # (at the front with faststart) or 'free'/'wide'/'mdat' (moov at the end).
    boxes = head_box_types(head)
    next_box = boxes[1] if len(boxes) > 1 else None
    if brands & _HEIF_BRANDS and next_box == "meta":
        return HEIC
    if major in _HEIF_BRANDS:
        return HEIC
    if major in _QUICKTIME_BRANDS:
        return MOV
    if major in _MP4_BRANDS:
        return MP4
    if major.startswith(("3gp", "3g2")):
        raise UnsupportedMedia.not_media("a 3GP mobile phone video")
    if major == "crx ":
        raise UnsupportedMedia.not_media("a Canon RAW photo (CR3)")
    # Unknown major brand: fall back on the compatible brands.
    if brands & _MP4_BRANDS:
        return MP4
    if brands & _QUICKTIME_BRANDS:
        return MOV
    if brands & _HEIF_BRANDS:
        return HEIC
    raise UnsupportedMedia.not_media(f"an ISO media file of an unknown kind (brand {major!r})")


# (prefix, offset, description), checked in order.
_SIGNATURES: tuple[tuple[bytes, int, str], ...] = (
    (b"%PDF-", 0, "a PDF document"),
    (b"GIF87a", 0, "a GIF image"),
    (b"GIF89a", 0, "a GIF image"),
    (b"WEBP", 8, "a WebP image"),
    (b"AVI ", 8, "an AVI video"),
    (b"WAVE", 8, "a WAV sound recording"),
    (b"II*\x00", 0, "a TIFF or camera RAW image"),
    (b"MM\x00*", 0, "a TIFF or camera RAW image"),
    (b"\x1a\x45\xdf\xa3", 0, "a Matroska or WebM video"),
    (b"\x00\x00\x01\xba", 0, "an MPEG program stream video (MPG/VOB)"),
    (b"DICM", 128, "a DICOM medical image"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", 0, "an older Microsoft Office document"),
    (b"\x1f\x8b", 0, "a gzip archive"),
    (b"7z\xbc\xaf\x27\x1c", 0, "a 7-Zip archive"),
    (b"Rar!\x1a\x07", 0, "a RAR archive"),
    (b"MZ", 0, "a Windows program"),
    (b"\x7fELF", 0, "a program"),
    (b"8BPS", 0, "a Photoshop document"),
    (b"ID3", 0, "an MP3 sound recording"),
    (b"\xff\x0a", 0, "a JPEG XL image"),
    (b"\x00\x00\x00\x0cJXL ", 0, "a JPEG XL image"),
    (b"\x00\x00\x00\x0cjP  ", 0, "a JPEG 2000 image"),
    (b"{\\rtf", 0, "an RTF document"),
)


def describe(head: bytes) -> str | None:
    """A short human description of what a non-media file looks like, if cheap to tell."""
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06", b"PK\x07\x08")):
        if b"[Content_Types].xml" in head or b"word/" in head or b"xl/" in head:
            return "a Microsoft Office document"
        if b"mimetypeapplication/vnd.oasis.opendocument" in head:
            return "an OpenDocument file"
        return "a ZIP archive"
    for signature, offset, description in _SIGNATURES:
        if head[offset : offset + len(signature)] == signature:
            return description
    if len(head) >= 376 and head[0] == 0x47 and head[188] == 0x47:
        return "an MPEG transport stream video (AVCHD/M2TS)"
    if head.startswith(b"BM") and len(head) >= 14 and head[6:10] == b"\x00\x00\x00\x00":
        return "a BMP image"
    text = _as_text(head)
    if text is not None:
        lowered = text.lstrip("\ufeff \t\r\n").lower()
        if lowered.startswith(("<!doctype html", "<html")):
            return "a web page (HTML)"
        if "<svg" in lowered[:1024]:
            return "an SVG image"
        if lowered.startswith("<?xml"):
            return "an XML document"
        return "a text file"
    return None


def _as_text(head: bytes) -> str | None:
    encodings: tuple[str, ...]
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        encodings = ("utf-16",)
    elif b"\x00" in head:
        return None
    else:
        encodings = ("utf-8", "cp932")  # cp932: Shift_JIS as written by Japanese Windows
    for encoding in encodings:
        # final=False: a multi-byte character cut at the end of the head is not an error.
        decoder = codecs.getincrementaldecoder(encoding)()
        try:
            text = decoder.decode(head, final=False)
        except UnicodeDecodeError:
            continue
        control = sum(1 for ch in text if ord(ch) < 0x20 and ch not in "\t\r\n\f")
        if control <= len(text) // 100:
            return text
    return None
