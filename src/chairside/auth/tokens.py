"""Secrets handed out once and stored only as SHA-256: station, relay and session tokens, enrollment codes."""

from __future__ import annotations

import hashlib
import secrets

STATION_PREFIX, RELAY_PREFIX, SESSION_PREFIX = "cs_st", "cs_rl", "cs_se"


def new_token(prefix: str) -> str:
    return f"{prefix}_{secrets.token_urlsafe(32)}"


def token_hash(token: str) -> str:
    """Tokens are 256 random bits: a plain SHA-256 is a safe one-way store for them."""
    return hashlib.sha256(token.encode()).hexdigest()
