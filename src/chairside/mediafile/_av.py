"""Small PyAV helpers shared by probing and thumbnailing.

PyAV keeps FFmpeg's own logging switched off unless the application enables it
(``av.logging.set_level``), so nothing here writes to stderr; FFmpeg errors surface
as exceptions, which are translated to CorruptMedia.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from fractions import Fraction

import av
from av.container import InputContainer
from av.stream import Disposition
from av.video.frame import VideoFrame
from av.video.stream import VideoStream
from PIL import Image

from chairside.mediafile.errors import CorruptMedia, UnsupportedMedia

#: How many frames to decode after a seek while looking for the target time
#: (covers a 3 s GOP at 30 fps) before settling for the latest decoded frame.
MAX_FRAMES_AFTER_SEEK = 90
#: How many packets may be read before the first picture appears.
MAX_PACKETS_BEFORE_PICTURE = 600


@contextmanager
def corrupt_on_av_error(reason: str) -> Iterator[None]:
    """Turn FFmpeg failures into CorruptMedia; a missing or unreadable file stays an OSError."""
    try:
        yield
    except av.FFmpegError as exc:
        if isinstance(exc, FileNotFoundError | PermissionError | IsADirectoryError):
            raise
        raise CorruptMedia.video(reason, detail=f"{type(exc).__name__}: {exc}") from exc


@contextmanager
def open_input(path: str | os.PathLike[str]) -> Iterator[InputContainer]:
    with corrupt_on_av_error("its header or index could not be read"):
        container = av.open(os.fspath(path), mode="r")
    with container:
        yield container


def video_stream(container: InputContainer) -> VideoStream:
    """The main picture track (cover art and thumbnails tracks are skipped)."""
    candidates = [
        s for s in container.streams.video if not s.disposition & Disposition.attached_pic
    ]
    if not candidates:
        raise UnsupportedMedia.no_video_track()
    defaults = [s for s in candidates if s.disposition & Disposition.default]
    stream = (defaults or candidates)[0]
    # We decode a handful of frames: one decoder thread keeps memory low (FFmpeg's default
    # frame threading holds a 1080p frame per thread) and costs nothing measurable here.
    stream.codec_context.thread_count = 1
    return stream


def duration_seconds(container: InputContainer, stream: VideoStream) -> float | None:
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    if container.duration:
        return container.duration / av.time_base
    return None


def frame_rate(stream: VideoStream) -> Fraction | None:
    for rate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        if rate:
            return rate
    return None


def display_rotation(frame: VideoFrame) -> int:
    """Clockwise degrees (0, 90, 180, 270) to turn a decoded frame upright.

    FFmpeg reports the display matrix rotation counter-clockwise.
    """
    return round(-frame.rotation / 90) % 4 * 90


def first_frame(container: InputContainer, stream: VideoStream) -> VideoFrame | None:
    """Decode from the current position until a picture comes out."""
    with corrupt_on_av_error("its pictures could not be decoded"):
        for count, packet in enumerate(container.demux(stream)):
            frames = packet.decode()
            if frames:
                return frames[0]
            if count >= MAX_PACKETS_BEFORE_PICTURE:
                return None
    return None


def frame_at(container: InputContainer, stream: VideoStream, seconds: float) -> VideoFrame | None:
    """The frame shown at ``seconds`` (or the nearest one decodable after a keyframe seek)."""
    time_base = stream.time_base or Fraction(1, 90_000)
    target = (stream.start_time or 0) + int(seconds / time_base)
    rate = frame_rate(stream)
    half_frame = int(1 / (2 * rate) / time_base) if rate else 0
    latest: VideoFrame | None = None
    decoded = 0
    with corrupt_on_av_error("its pictures could not be decoded"):
        container.seek(target, stream=stream, backward=True)
        for packet in container.demux(stream):
            for frame in packet.decode():
                latest = frame
                decoded += 1
                if frame.pts is not None and frame.pts >= target - half_frame:
                    return frame
                if decoded >= MAX_FRAMES_AFTER_SEEK:
                    return frame
    return latest


def frame_to_pil(frame: VideoFrame, width: int, height: int) -> Image.Image:
    """The frame scaled to ``width`` x ``height`` as an RGB Pillow image."""
    rgb = frame.reformat(width=width, height=height, format="rgb24", interpolation="AREA")
    plane = rgb.planes[0]
    return Image.frombuffer(
        "RGB", (rgb.width, rgb.height), bytes(plane), "raw", "RGB", plane.line_size, 1
    )
