"""Client-made ids; the implementation lives in `chairside.ids`, which the server shares without httpx."""

from chairside.ids import uuid7

__all__ = ["uuid7"]
