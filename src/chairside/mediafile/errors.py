"""Errors raised while ingesting media, with messages written for clinic staff.

``message`` is what the viewer or the capture station shows; ``code`` is a stable
machine-readable key (for translation and metrics); ``detail`` carries the technical
reason for logs and support, never shown to staff.
"""

from __future__ import annotations

SUPPORTED_FORMATS = "MP4/MOV videos (H.264, H.265), JPEG, PNG and HEIC photos"


class MediaError(Exception):
    """Base class: a file that Chairside cannot store as a photo or video."""

    code: str = "media.error"

    def __init__(self, message: str, *, code: str | None = None, detail: str | None = None):
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.detail = detail

    def __str__(self) -> str:
        return self.message if self.detail is None else f"{self.message} [{self.detail}]"


class UnsupportedMedia(MediaError):
    """The file is intact but is not a kind of media Chairside stores."""

    code = "media.unsupported"

    @classmethod
    def not_media(cls, looks_like: str | None) -> UnsupportedMedia:
        what = f" (it looks like {looks_like})" if looks_like else ""
        return cls(
            f"This file is not a photo or video Chairside can store{what}. "
            f"Supported: {SUPPORTED_FORMATS}.",
            code="media.unsupported.type",
            detail=looks_like,
        )

    @classmethod
    def wrong_kind(cls, expected: str, actual: str) -> UnsupportedMedia:
        return cls(
            f"This file is a {actual}, not a {expected}. Supported: {SUPPORTED_FORMATS}.",
            code="media.unsupported.kind",
            detail=f"expected {expected}, got {actual}",
        )

    @classmethod
    def video_codec(cls, codec: str) -> UnsupportedMedia:
        return cls(
            f"This video is encoded as {codec}, which Chairside cannot store. "
            "Export it as H.264 or H.265 (HEVC) MP4 and upload the new file.",
            code="media.unsupported.codec",
            detail=codec,
        )

    @classmethod
    def no_video_track(cls) -> UnsupportedMedia:
        return cls(
            "This file contains no video picture (it may be a sound recording). "
            f"Supported: {SUPPORTED_FORMATS}.",
            code="media.unsupported.no_video",
        )

    @classmethod
    def too_large(cls, megapixels: float) -> UnsupportedMedia:
        return cls(
            f"This photo is too large to process ({megapixels:.0f} megapixels). "
            "Export it at a smaller size and upload it again.",
            code="media.unsupported.too_large",
            detail=f"{megapixels:.1f} MP",
        )


class CorruptMedia(MediaError):
    """The file claims to be a supported kind of media but is damaged or incomplete."""

    code = "media.corrupt"

    @classmethod
    def video(cls, reason: str, *, detail: str | None = None) -> CorruptMedia:
        return cls(
            f"The video file is damaged or incomplete ({reason}). "
            "Record or export it again and upload the new file.",
            code="media.corrupt.video",
            detail=detail,
        )

    @classmethod
    def photo(cls, reason: str, *, detail: str | None = None) -> CorruptMedia:
        return cls(
            f"The photo file is damaged or incomplete ({reason}). "
            "Take or export it again and upload the new file.",
            code="media.corrupt.photo",
            detail=detail,
        )
