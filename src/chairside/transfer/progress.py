"""What the import and export tell whoever shows their progress (the command line draws it with Rich)."""

from __future__ import annotations

from typing import Protocol


class Progress(Protocol):
    def start(self, files: int, total_bytes: int) -> None:
        """The work of this run: files and bytes still to do."""

    def advance(self, n: int) -> None:
        """`n` more bytes are done."""

    def file_done(self, name: str) -> None:
        """One more file is done (verified or skipped)."""

    def note(self, message: str) -> None:
        """Something a person should read now (a skipped file, a full disk)."""


class NoProgress:
    def start(self, files: int, total_bytes: int) -> None:
        pass

    def advance(self, n: int) -> None:
        pass

    def file_done(self, name: str) -> None:
        pass

    def note(self, message: str) -> None:
        pass


class TransferError(Exception):
    """A reason the whole run stops (missing source, unplugged disk, full target): Japanese, then English."""

    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
