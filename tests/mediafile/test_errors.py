from __future__ import annotations

from chairside.mediafile import CorruptMedia, MediaError, UnsupportedMedia


def test_messages_speak_to_clinic_staff_and_keep_technical_detail_apart() -> None:
    error = CorruptMedia.video("the file ends before the recording does", detail="moov missing")
    assert error.message == (
        "The video file is damaged or incomplete (the file ends before the recording does). "
        "Record or export it again and upload the new file."
    )
    assert "moov" not in error.message
    assert error.detail == "moov missing"
    assert error.code == "media.corrupt.video"
    assert isinstance(error, MediaError)


def test_unsupported_type_names_what_the_file_looks_like() -> None:
    error = UnsupportedMedia.not_media("a PDF document")
    assert error.message == (
        "This file is not a photo or video Chairside can store (it looks like a PDF document). "
        "Supported: MP4/MOV videos (H.264, H.265), JPEG, PNG and HEIC photos."
    )
    assert str(error).startswith(error.message)


def test_unsupported_type_without_a_guess_says_nothing_about_looks() -> None:
    assert "looks like" not in UnsupportedMedia.not_media(None).message
