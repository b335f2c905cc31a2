from __future__ import annotations

from typing import Any


class ChairsideError(Exception):
    """The server refused a request; `detail` is its message for people, `problem` the whole RFC 9457 body."""

    def __init__(self, status: int, detail: str, problem: dict[str, Any] | None = None) -> None:
        super().__init__(f"{status}: {detail}")
        self.status = status
        self.detail = detail
        self.problem = problem or {}


class UploadFailed(ChairsideError):
    """An upload gave up after its retries, or the server refused the file."""
