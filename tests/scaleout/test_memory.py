"""Memory stays flat under a burst of sign-ins: argon2 takes 64 MiB per hash, so at most two run at once."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from chairside.auth import accounts


class _Counting:
    """Stands in for the argon2 hasher and records how many hashes ran at the same moment."""

    def __init__(self) -> None:
        self.now = self.most = 0
        self.lock = threading.Lock()

    def _run(self) -> None:
        with self.lock:
            self.now += 1
            self.most = max(self.most, self.now)
        time.sleep(0.05)
        with self.lock:
            self.now -= 1

    def verify(self, stored: str, password: str) -> bool:
        self._run()
        return True

    def hash(self, password: str) -> str:
        self._run()
        return "hashed"


def test_a_burst_of_sign_ins_hashes_two_at_a_time(monkeypatch: pytest.MonkeyPatch) -> None:
    counting = _Counting()
    monkeypatch.setattr(accounts, "_hasher", counting)
    with ThreadPoolExecutor(max_workers=20) as pool:
        results = list(pool.map(lambda i: accounts.check_password("stored", f"pw{i}") if i % 2
                                else accounts.hash_password(f"pw{i}") == "hashed", range(20)))
    assert all(results)
    assert counting.most == 2
