"""The Chairside SDK for capture software, the relay, the CLI and the tests.

Everything public is listed in `__all__`; the rest lives in private modules.
"""

from chairside.client._client import Client, Progress
from chairside.client._errors import ChairsideError, UploadFailed
from chairside.client._ids import uuid7

__all__ = ["ChairsideError", "Client", "Progress", "UploadFailed", "uuid7"]
