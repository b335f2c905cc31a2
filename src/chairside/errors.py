"""RFC 9457 problem details: the one error every layer raises for a client, with a message staff can act on.

How a Problem becomes an HTTP answer (and the framework's own errors become Problems) is
api/problems.py.
"""

from __future__ import annotations

from typing import Any

PROBLEM_JSON = "application/problem+json"

_TITLES = {
    400: "Bad request",
    401: "Not signed in",
    403: "Not allowed",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict",
    410: "Gone",
    412: "Precondition failed",
    413: "Too large",
    415: "Unsupported media type",
    416: "Range not satisfiable",
    422: "Invalid input",
    423: "Busy",
    460: "Checksum mismatch",
    500: "Server error",
    507: "Storage full",
}


class Problem(Exception):
    """An error for the client, with a `detail` that a clinic's staff can act on."""

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        title: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.title = title or _TITLES.get(status, "Error")
        self.code = code
        self.headers = headers or {}
        self.extra = extra

    def body(self, instance: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {
            "type": f"https://chairside.example/problems/{self.code}" if self.code else "about:blank",
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
        }
        if instance:
            body["instance"] = instance
        body.update(self.extra)
        return body
