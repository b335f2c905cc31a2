"""Media items as callers see them: what answers for one that is missing or out of sight."""

from __future__ import annotations

from chairside.errors import Problem


def not_found() -> Problem:
    return Problem(404, "This photo or video was not found. It may have been deleted, or belong to a "
                   "patient you cannot see.", code="media-not-found")
