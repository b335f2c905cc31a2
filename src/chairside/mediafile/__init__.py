"""Media ingest: identify uploaded files by their bytes, probe them, make thumbnails.

Synthetic media for demos, tests and benchmarks lives in ``chairside.mediafile.generate``.
"""

from chairside.mediafile.errors import CorruptMedia, MediaError, UnsupportedMedia
from chairside.mediafile.probe import ImageInfo, VideoInfo, probe_image, probe_video
from chairside.mediafile.sniff import MediaKind, Sniffed, sniff, sniff_head
from chairside.mediafile.thumbnails import make_display_jpeg, make_thumbnail

__all__ = [
    "CorruptMedia",
    "ImageInfo",
    "MediaError",
    "MediaKind",
    "Sniffed",
    "UnsupportedMedia",
    "VideoInfo",
    "make_display_jpeg",
    "make_thumbnail",
    "probe_image",
    "probe_video",
    "sniff",
    "sniff_head",
]
