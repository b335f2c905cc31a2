"""Synthetic but real media for the demo, the tests and the benchmarks.

Everything is deterministic for a given seed: frames are drawn with Pillow from a
seeded random source and x264 runs single-threaded (with ``preset=ultrafast`` a 1080p
frame still encodes in a few milliseconds).
"""

from __future__ import annotations

import math
import os
import random
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from fractions import Fraction
from pathlib import Path
from typing import Literal

import av
from av.container import OutputContainer
from av.stream import Stream
from av.video.frame import VideoFrame
from av.video.stream import VideoStream
from PIL import Image, ImageDraw, ImageFont

from chairside.mediafile import _heif  # noqa: F401  (registers the HEIC writer with Pillow
from chairside.mediafile._exif import build_exif

VideoCodec = Literal["h264", "hevc"]

ENCODERS: dict[str, str] = {"h264": "libx264", "hevc": "libx265"}

_BLACK_Y, _NEUTRAL_CHROMA = 16, 128  # limited-range black


def encoder_available(codec: str) -> bool:
    """Whether PyAV's bundled FFmpeg can encode ``codec`` ("h264" or "hevc")."""
    return ENCODERS.get(codec, "") in av.codecs_available


def make_video(
    path: str | os.PathLike[str],
    *,
    seconds: float = 2.0,
    width: int = 1920,
    height: int = 1080,
    fps: int = 30,
    codec: VideoCodec = "h264",
    bitrate: int = 15_000_000,
    black_lead_frames: int = 3,
    label: str | None = None,
    faststart: bool = True,
    seed: int = 0,
    rotation: int = 0,
    container_format: Literal["mp4", "mov"] = "mp4",
) -> Path:
    """Encode a clip of a moving scene, starting with ``black_lead_frames`` black frames.

    ``rotation`` (0/90/180/270, clockwise) is stored as display metadata, as phones do.
    ``faststart`` puts the index ('moov') before the data, as for web playback.
    """
    path = Path(path)
    frame_count = max(1, round(seconds * fps))
    options = {"movflags": "+faststart"} if faststart else {}
    with (
        _cleanup_on_error(path),
        av.open(str(path), mode="w", format=container_format, options=options) as output,
    ):
        _set_metadata(output, label, seed)
        stream = _add_video_stream(output, codec, width, height, fps, bitrate, rotation)
        for frame in _Scene(width, height, seed, label).frames(frame_count, black_lead_frames):
            output.mux(stream.encode(frame))
        output.mux(stream.encode(None))
    return path


def make_long_video(
    path: str | os.PathLike[str],
    *,
    target_bytes: int | None = None,
    seconds: float | None = None,
    bitrate: int = 15_000_000,
    width: int = 1920,
    height: int = 1080,
    fps: int = 30,
    seed: int = 0,
    seed_seconds: float = 2.0,
    faststart: bool = False,
    label: str | None = None,
) -> Path:
    """A long, valid H.264 MP4, fast: encode ``seed_seconds`` once, then repeat its packets.

    Stops once ``target_bytes`` of video data are written or ``seconds`` are reached,
    whichever comes first. The repeats are remuxed, not re-encoded, so this runs at disk
    speed and needs memory only for the seed clip (about 4 MB at 15 Mbit/s). Each repeat
    starts on a keyframe, so the result plays, seeks and probes like a real recording.
    ``faststart`` is off by default: moving the index to the front rewrites the file.
    """
    if target_bytes is None and seconds is None:
        raise ValueError("give target_bytes or seconds")
    path = Path(path)
    max_frames = math.inf if seconds is None else max(1, round(seconds * fps))
    max_bytes = math.inf if target_bytes is None else target_bytes
    seed_frames = max(1, round(seed_seconds * fps))
    options = {"movflags": "+faststart"} if faststart else {}
    with (
        _cleanup_on_error(path),
        av.open(str(path), mode="w", format="mp4", options=options) as output,
    ):
        _set_metadata(output, label, seed)
        stream = _add_video_stream(output, "h264", width, height, fps, bitrate, 0)
        written_frames, written_bytes = 0, 0
        seed_packets: list[_StoredPacket] = []
        for frame in _Scene(width, height, seed, label).frames(seed_frames, 0):
            for packet in stream.encode(frame):
                seed_packets.append(_StoredPacket.of(packet))
        seed_packets.extend(_StoredPacket.of(packet) for packet in stream.encode(None))
        # Repeat k is shifted by k seed-clip lengths, in the packets' own time base.
        time_base = seed_packets[0].time_base
        period = round(Fraction(seed_frames, fps) / time_base)
        repeat = 0
        while written_frames < max_frames and written_bytes < max_bytes:
            for stored in seed_packets:
                output.mux_one(stored.packet(stream, offset=repeat * period))
                written_frames += 1
                written_bytes += len(stored.data)
                if written_frames >= max_frames or written_bytes >= max_bytes:
                    break
            repeat += 1
    return path


@dataclass(frozen=True, slots=True)
class _StoredPacket:
    data: bytes
    pts: int | None
    dts: int | None
    duration: int | None
    time_base: Fraction
    is_keyframe: bool

    @classmethod
    def of(cls, packet: av.Packet[VideoStream]) -> _StoredPacket:
        return cls(
            data=bytes(packet),
            pts=packet.pts,
            dts=packet.dts,
            duration=packet.duration,
            time_base=packet.time_base,
            is_keyframe=packet.is_keyframe,
        )

    def packet(self, stream: VideoStream, *, offset: int) -> av.Packet[Stream]:
        packet = av.Packet(self.data)
        packet.stream = stream
        packet.time_base = self.time_base
        packet.pts = None if self.pts is None else self.pts + offset
        packet.dts = None if self.dts is None else self.dts + offset
        packet.duration = self.duration
        packet.is_keyframe = self.is_keyframe
        return packet


@contextmanager
def _cleanup_on_error(path: Path) -> Iterator[None]:
    """Remove a half-written output file if generation fails."""
    try:
        yield
    except BaseException:
        path.unlink(missing_ok=True)
        raise


def _set_metadata(output: OutputContainer, label: str | None, seed: int) -> None:
    output.metadata["comment"] = f"Chairside synthetic clip (seed {seed})"
    if label:
        output.metadata["title"] = label


def _add_video_stream(
    output: OutputContainer,
    codec: str,
    width: int,
    height: int,
    fps: int,
    bitrate: int,
    rotation: int,
) -> VideoStream:
    if width % 2 or height % 2 or width < 16 or height < 16:
        raise ValueError(f"width and height must be even and at least 16, not {width}x{height}")
    if rotation % 90:
        raise ValueError(f"rotation must be a multiple of 90 degrees, not {rotation}")
    if codec not in ENCODERS:
        raise ValueError(f"codec must be one of {sorted(ENCODERS)}, not {codec!r}")
    if not encoder_available(codec):
        raise RuntimeError(f"this FFmpeg build has no {ENCODERS[codec]} encoder")
    options = {
        "preset": "ultrafast",
        "g": str(fps),  # a keyframe every second, like capture stations
        "maxrate": str(bitrate),
        "bufsize": str(bitrate // 5),
    }
    if codec == "h264":
        # Constant bitrate with filler data, like a hardware recorder: file sizes match
        # the nominal rate however simple the synthetic picture is.
        options |= {"x264-params": "nal-hrd=cbr:force-cfr=1", "threads": "1"}
    else:
        options["x265-params"] = "log-level=error:pools=1:frame-threads=1"
    stream = output.add_stream(ENCODERS[codec], rate=fps, options=options)
    if not isinstance(stream, VideoStream):
        raise TypeError(f"{ENCODERS[codec]} did not make a video stream")
    stream.width, stream.height = width, height
    stream.pix_fmt = "yuv420p"
    stream.bit_rate = bitrate
    if codec == "hevc":
        stream.codec_tag = "hvc1"  # what Apple players require
    if rotation % 360:
        stream.set_display_rotation(-(rotation % 360))  # FFmpeg counts counter-clockwise
    return stream


class _Scene:
    """A scrolling diagonal pattern with a bouncing bright disc (an instrument tip)."""

    def __init__(self, width: int, height: int, seed: int, label: str | None) -> None:
        self.width, self.height = width, height
        rng = random.Random(seed)
        self.period = max(16, width // 3)
        wave = bytes(
            round(60 + 120 * abs((x % self.period) / self.period * 2 - 1))
            for x in range(width + self.period)
        )
        stripes = Image.frombytes("L", (len(wave), 1), wave).resize((len(wave), height))
        shade = Image.linear_gradient("L").resize((len(wave), height))
        self.background = Image.blend(stripes, shade, 0.35)
        self.speed = rng.randint(3, 9) * max(1, width // 640)
        self.radius = max(4, height // 8)
        self.position = (rng.uniform(0, 1), rng.uniform(0, 1))
        self.velocity = (rng.uniform(0.004, 0.012), rng.uniform(0.003, 0.01))
        self.u = _solid_plane(width // 2, height // 2, rng.randint(90, 120))
        self.v = _solid_plane(width // 2, height // 2, rng.randint(140, 170))
        self.label_mask = _render_label(label, height) if label else None

    def frames(self, count: int, black_lead: int) -> Iterator[VideoFrame]:
        for index in range(count):
            frame = (
                _black_frame(self.width, self.height) if index < black_lead else self._draw(index)
            )
            frame.pts = index
            yield frame

    def _draw(self, index: int) -> VideoFrame:
        offset = (index * self.speed) % self.period
        luma = self.background.crop((offset, 0, offset + self.width, self.height))
        draw = ImageDraw.Draw(luma)
        cx = _bounce(self.position[0] + self.velocity[0] * index) * (self.width - 2 * self.radius)
        cy = _bounce(self.position[1] + self.velocity[1] * index) * (self.height - 2 * self.radius)
        draw.ellipse((cx, cy, cx + 2 * self.radius, cy + 2 * self.radius), fill=235)
        if self.label_mask is not None:
            margin = self.height // 20
            luma.paste(235, (margin, margin), self.label_mask)
        frame = VideoFrame(self.width, self.height, "yuv420p")
        _fill_plane(frame, 0, luma.tobytes(), self.width)
        _fill_plane(frame, 1, self.u, self.width // 2)
        _fill_plane(frame, 2, self.v, self.width // 2)
        return frame


def _bounce(position: float) -> float:
    """Fold an unbounded position into 0..1 and back, like a ball between two walls."""
    return 1 - abs(position % 2 - 1)


def _solid_plane(width: int, height: int, value: int) -> bytes:
    return bytes([value]) * (width * height)


def _black_frame(width: int, height: int) -> VideoFrame:
    frame = VideoFrame(width, height, "yuv420p")
    _fill_plane(frame, 0, _solid_plane(width, height, _BLACK_Y), width)
    for index in (1, 2):
        chroma = _solid_plane(width // 2, height // 2, _NEUTRAL_CHROMA)
        _fill_plane(frame, index, chroma, width // 2)
    return frame


def _fill_plane(frame: VideoFrame, index: int, data: bytes, row_bytes: int) -> None:
    plane = frame.planes[index]
    if plane.line_size != row_bytes:  # rows are padded for alignment
        padding = bytes(plane.line_size - row_bytes)
        data = b"".join(
            data[row : row + row_bytes] + padding for row in range(0, len(data), row_bytes)
        )
    plane.update(data)


def _render_label(label: str, height: int) -> Image.Image | None:
    """The label as a mask, or None if Pillow's built-in font cannot draw it."""
    font = ImageFont.load_default(size=max(10, height // 16))
    try:
        left, top, right, bottom = font.getbbox(label)
        mask = Image.new("L", (max(1, int(right - left)), max(1, int(bottom - top))))
        ImageDraw.Draw(mask).text((-left, -top), label, fill=255, font=font)
    except UnicodeEncodeError:  # the bitmap fallback font is Latin-1 only
        return None
    return mask


# --- photos -----------------------------------------------------------------------------


def _photo_scene(width: int, height: int, seed: int) -> Image.Image:
    """A colourful, seeded test picture with an asymmetric mark (top-left) for orientation."""
    if width < 8 or height < 8:
        raise ValueError(f"photo must be at least 8x8, not {width}x{height}")
    rng = random.Random(seed)
    red = Image.linear_gradient("L").resize((width, height))
    green = Image.linear_gradient("L").rotate(90).resize((width, height))
    blue = Image.new("L", (width, height), rng.randint(60, 200))
    im = Image.merge("RGB", (red, green, blue))
    draw = ImageDraw.Draw(im)
    for _ in range(6):
        x, y = rng.uniform(0, width), rng.uniform(0, height)
        r = rng.uniform(0.05, 0.2) * min(width, height)
        fill = (rng.randint(0, 255), rng.randint(0, 255), rng.randint(0, 255))
        draw.ellipse((x - r, y - r, x + r, y + r), fill=fill)
    # A white block in the stored top-left corner shows where "up" was for the camera.
    draw.rectangle((0, 0, width // 4, height // 4), fill=(255, 255, 255))
    return im


def make_jpeg(
    path: str | os.PathLike[str],
    *,
    width: int = 1600,
    height: int = 1200,
    captured_at: datetime | None = None,
    orientation: int | None = None,
    seed: int = 0,
    quality: int = 90,
) -> Path:
    """A JPEG of ``width`` x ``height`` stored pixels, with EXIF when given.

    With ``orientation`` 6 or 8 the photo displays as ``height`` x ``width``.
    """
    path = Path(path)
    exif = build_exif(captured_at=captured_at, orientation=orientation)
    _photo_scene(width, height, seed).save(path, format="JPEG", quality=quality, exif=exif)
    return path


def make_png(
    path: str | os.PathLike[str],
    *,
    width: int = 1600,
    height: int = 1200,
    captured_at: datetime | None = None,
    orientation: int | None = None,
    seed: int = 0,
    alpha: bool = False,
) -> Path:
    """A PNG (an eXIf chunk carries EXIF when given); ``alpha`` adds a transparent border."""
    path = Path(path)
    im = _photo_scene(width, height, seed)
    if alpha:
        mask = Image.new("L", (width, height), 0)
        ImageDraw.Draw(mask).rectangle(
            (width // 8, height // 8, width - width // 8, height - height // 8), fill=255
        )
        im.putalpha(mask)
    exif = build_exif(captured_at=captured_at, orientation=orientation)
    im.save(path, format="PNG", exif=exif)
    return path


def make_heic(
    path: str | os.PathLike[str],
    *,
    width: int = 1600,
    height: int = 1200,
    captured_at: datetime | None = None,
    orientation: int | None = None,
    seed: int = 0,
    quality: int = 80,
) -> Path:
    """A HEIC photo like a phone's: EXIF orientation is also written as HEIF rotation."""
    path = Path(path)
    exif = build_exif(captured_at=captured_at, orientation=orientation)
    _photo_scene(width, height, seed).save(
        path, format="HEIF", quality=quality, exif=exif.tobytes()
    )
    return path
