"""Probe an uploaded file: what it contains, and whether it is complete.

Videos are never read whole: top-level box headers and the container index are
checked against the file size, the first picture is decoded, and so is the last GOP
(from the last keyframe to the end). A 5 GB recording probes in well under a second.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime

from av.container import InputContainer
from av.video.stream import VideoStream

from chairside.mediafile._av import (
    corrupt_on_av_error,
    display_rotation,
    duration_seconds,
    first_frame,
    frame_rate,
    open_input,
    video_stream,
)
from chairside.mediafile._exif import TRANSPOSED_ORIENTATIONS, captured_at_of, orientation_of
from chairside.mediafile._isobmff import BoxError, iter_top_level_boxes
from chairside.mediafile._photo import DEFAULT_MAX_PIXELS, open_photo
from chairside.mediafile.errors import CorruptMedia, UnsupportedMedia
from chairside.mediafile.sniff import sniff

SUPPORTED_VIDEO_CODECS = frozenset({"h264", "hevc"})

_CODEC_NAMES = {
    "mpeg4": "MPEG-4 Part 2",
    "mpeg2video": "MPEG-2",
    "mjpeg": "Motion JPEG",
    "prores": "Apple ProRes",
    "dnxhd": "Avid DNxHD",
    "av1": "AV1",
    "vp8": "VP8",
    "vp9": "VP9",
    "vvc": "H.266 (VVC)",
    "h263": "H.263",
}

#: Index entries checked at the end of each track (covers B-frame reordering).
_TAIL_ENTRIES = 64
#: Packets decoded from the last keyframe on (10 s at 30 fps bounds a long GOP).
MAX_TAIL_PACKETS = 300


@dataclass(frozen=True, slots=True)
class VideoInfo:
    duration_s: float
    #: As displayed, i.e. after ``rotation``.
    width: int
    height: int
    fps: float
    codec: str
    bitrate: int | None
    #: Clockwise degrees a player turns the stored picture (phone videos): 0/90/180/270.
    rotation: int = 0


@dataclass(frozen=True, slots=True)
class ImageInfo:
    #: As displayed, i.e. after EXIF orientation.
    width: int
    height: int
    captured_at: datetime | None
    orientation: int | None
    mime: str


def probe_video(path: str | os.PathLike[str]) -> VideoInfo:
    """Describe an MP4/MOV recording; raise UnsupportedMedia or CorruptMedia."""
    sniffed = sniff(path)
    if sniffed.kind != "video":
        raise UnsupportedMedia.wrong_kind("video", "photo")
    file_size = _check_top_level_boxes(path)
    with open_input(path) as container:
        stream = video_stream(container)
        codec = stream.codec_context.name
        if codec not in SUPPORTED_VIDEO_CODECS:
            raise UnsupportedMedia.video_codec(_CODEC_NAMES.get(codec, codec))
        width, height = stream.codec_context.width, stream.codec_context.height
        duration = duration_seconds(container, stream)
        rate = frame_rate(stream)
        if not width or not height or not duration or duration <= 0 or rate is None:
            raise CorruptMedia.video(
                "its picture size or length could not be read",
                detail=f"{width}x{height}, duration={duration}, rate={rate}",
            )
        _check_samples_within_file(container, file_size)

        head = first_frame(container, stream)
        if head is None:
            raise CorruptMedia.video("no picture could be decoded", detail="no frame at start")
        rotation = display_rotation(head)
        _check_tail_decodes(container, stream)

        bitrate = stream.bit_rate or container.bit_rate or None
    if rotation in (90, 270):
        width, height = height, width
    return VideoInfo(
        duration_s=duration,
        width=width,
        height=height,
        fps=float(rate),
        codec=codec,
        bitrate=bitrate,
        rotation=rotation,
    )


def _check_top_level_boxes(path: str | os.PathLike[str]) -> int:
    """Every top-level box must fit in the file and one must be the index ('moov')."""
    has_index = False
    with open(path, "rb") as f:
        file_size = os.fstat(f.fileno()).st_size
        try:
            for box in iter_top_level_boxes(f, file_size):
                has_index = has_index or box.type == "moov"
        except BoxError as exc:
            reason = (
                "the file ends before the recording does"
                if exc.truncated
                else "its structure is unreadable"
            )
            raise CorruptMedia.video(reason, detail=exc.reason) from exc
    if not has_index:
        raise CorruptMedia.video(
            "the recording was not finished: its index is missing", detail="no moov box"
        )
    return file_size


def _check_samples_within_file(container: InputContainer, file_size: int) -> None:
    """The index says where every sample lives; the last ones must lie inside the file.

    This catches an MP4 with its index at the front ("faststart") that was cut short.
    """
    for stream in container.streams:
        entries = stream.index_entries
        count = len(entries)
        if count == 0:
            continue
        end = max(e.pos + e.size for e in entries[max(0, count - _TAIL_ENTRIES) : count])
        if end > file_size:
            raise CorruptMedia.video(
                "the file ends before the recording does",
                detail=f"track {stream.index} needs {end} bytes, file has {file_size}",
            )


def _check_tail_decodes(container: InputContainer, stream: VideoStream) -> None:
    """Decode from the last keyframe to the end: the tail holds real pictures, not garbage.

    Costs one GOP (about a second for capture stations), whatever the file size.
    """
    entries = stream.index_entries
    count = len(entries)
    if count == 0:
        return
    decoded = 0
    with corrupt_on_av_error("its last pictures could not be read"):
        last = entries.search_timestamp(entries[count - 1].timestamp, backward=True)
        container.seek(entries[max(last, 0)].timestamp, stream=stream, backward=True)
        for index, packet in enumerate(container.demux(stream)):
            decoded += len(packet.decode())
            if index >= MAX_TAIL_PACKETS:
                break
    if decoded == 0:
        raise CorruptMedia.video(
            "its last pictures could not be read", detail="no frame after the last keyframe"
        )


def probe_image(path: str | os.PathLike[str], max_pixels: int = DEFAULT_MAX_PIXELS) -> ImageInfo:
    """Describe a JPEG/PNG/HEIC photo; the whole image is decoded to prove it is complete (refused unread
    above `max_pixels`)."""
    sniffed = sniff(path)
    with open_photo(path, sniffed, max_pixels) as im:
        stored_width, stored_height = im.size
        is_heif = im.format == "HEIF"
        if im.format in ("JPEG", "MPO"):  # MPO: phone JPEGs with a gain map or depth map
            # Decoding at 1/8 scale still reads every byte of the compressed data.
            im.draft("RGB", (max(1, stored_width // 8), max(1, stored_height // 8)))
        im.load()
        orientation = orientation_of(im)
        captured_at = captured_at_of(im.getexif())
    width, height = stored_width, stored_height
    # pillow-heif already reports HEIC sizes as displayed.
    if not is_heif and orientation in TRANSPOSED_ORIENTATIONS:
        width, height = height, width
    return ImageInfo(
        width=width,
        height=height,
        captured_at=captured_at,
        orientation=orientation,
        mime=sniffed.mime,
    )
