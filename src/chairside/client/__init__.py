"""The Chairside SDK for capture software, the relay, the CLI and the tests.

Everything public is listed in `__all__`; the rest lives in private modules.
"""

from chairside.client._client import Client, Progress
from chairside.client._errors import ChairsideError, UploadFailed
from chairside.client._ids import uuid7
from chairside.client._pin import PinError, PinMismatch, fetch_fingerprint

__all__ = [
    "ChairsideError",
    "Client",
    "PinError",
    "PinMismatch",
    "Progress",
    "UploadFailed",
    "fetch_fingerprint",
    "uuid7",
]
