"""The OpenAPI document tells the truth: schemathesis, bounded in time, against a real server process as a capture
station and as a signed-in viewer (tus routes included: the document declares their Tus-Resumable header). It
fails on any 5xx, any status or content type the document does not declare, and any answer that breaks its
schema. The number of cases and the time taken are printed.

CHAIRSIDE_SCHEMATHESIS_S sets the time budget of each run (default 15 s; CI may give it more).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.hostile.conftest import Served

CHECKS = "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance"
BUDGET_S = os.environ.get("CHAIRSIDE_SCHEMATHESIS_S", "15")


def _st() -> str:
    return str(Path(sys.executable).parent / "st")


@pytest.mark.parametrize("caller", ["station", "viewer"])
def test_the_openapi_document_holds_for_generated_requests(served: Served, caller: str, tmp_path: Path) -> None:
    if caller == "station":
        token = served.tenant.station_tokens[0]
    else:
        r = httpx.post(f"{served.url}/api/v1/sessions", json={
            "login": served.viewer.login, "password": served.viewer.password, "device_name": "schemathesis",
            "takeover": True})
        assert r.status_code == 201, r.text
        token = r.json()["token"]
    started = time.monotonic()
    # The session's own sign-out would end the viewer's run early; nothing else is excluded. One worker:
    # CPython 3.11.7's ast.parse is not thread-safe (gh-106905, "AST constructor recursion depth mismatch"),
    # and hypothesis parses lambdas' sources as it describes strategies: with two workers the tool crashed.
    run = subprocess.run(
        [_st(), "run", f"{served.url}/openapi.json", "-H", f"Authorization: Bearer {token}", "--checks", CHECKS,
         "--max-time", BUDGET_S, "--phases", "examples,coverage,fuzzing", "--workers", "1", "--seed", "15",
         "--exclude-path", "/api/v1/sessions/current", "--request-timeout", "30"],
        capture_output=True, text=True, cwd=tmp_path, timeout=int(BUDGET_S) + 240)
    took = time.monotonic() - started
    out = run.stdout + run.stderr
    cases = re.search(r"(\d+) generated", out)
    print(f"\nSCHEMATHESIS as {caller}: {cases[1] if cases else '?'} cases in {took:.0f} s, exit {run.returncode}")
    assert run.returncode == 0, out[-6000:]
    assert cases is not None and int(cases[1]) > 0
    tested = re.search(r"Tested: (\d+)", out)
    assert tested is not None and int(tested[1]) > 10, out[-3000:]
