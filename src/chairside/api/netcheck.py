"""The cloud's line-check endpoints (`chairside netcheck` measures against them): start a run, ping, a
download stream and an upload sink. Open only with an onboarding code (header `X-Netcheck-Code`):
unknown → 401, expired, used up or outside its run → 403 (netcheck/codes.py, docs/netcheck.md).

The streams are bounded by time (at most MAX_STREAM_S each), never by what the client asks, and keep
memory flat: the download repeats one random buffer, the upload counts and drops what arrives.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import AsyncIterator
from typing import Annotated

import anyio
from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field
from starlette.requests import ClientDisconnect

from chairside.api.deps import get_context
from chairside.api.principal import allow
from chairside.context import Context
from chairside.errors import Problem
from chairside.netcheck import codes

router = APIRouter(prefix="/api/v1/netcheck", tags=["netcheck"])

MAX_STREAM_S = 30.0  # one download or upload stream, whatever the client asks
SAMPLE_S = 0.05  # the upload sink's samples of bytes received
_PIECE = os.urandom(256 * 1024)  # incompressible, made once: every download repeats it

Code = Annotated[str | None, Header(alias="X-Netcheck-Code", description="The onboarding code.")]


class RunIn(BaseModel):
    minutes: float = Field(gt=0, description="How long the run lasts (its measurement requests are admitted "
                                             "for this long plus a minute).")


class RunOut(BaseModel):
    until: str
    runs_left: int
    max_stream_s: float


class Pong(BaseModel):
    ok: bool = True


class Received(BaseModel):
    bytes: int
    seconds: float
    samples: list[tuple[float, int]] = Field(description="(server clock in seconds, bytes so far), every "
                                                         "SAMPLE_S: the client's upload rate is their slope.")


def _code(code: str | None) -> str:
    if not code or not code.strip():
        raise Problem(401, codes.BAD_CODE, code="bad-netcheck-code")
    return code


async def _admit(ctx: Context, code: str | None) -> None:
    value = _code(code)
    if not codes.admitted_cached(value):
        await anyio.to_thread.run_sync(lambda: codes.admit(ctx, value))


@router.post("/runs", response_model=RunOut, status_code=201, dependencies=[allow()],
             summary="Start a line-check run with an onboarding code")
def post_run(body: RunIn, ctx: Annotated[Context, Depends(get_context)], x_netcheck_code: Code = None) -> RunOut:
    run = codes.start_run(ctx, _code(x_netcheck_code), body.minutes)
    return RunOut(until=run.until.isoformat(), runs_left=run.runs_left, max_stream_s=MAX_STREAM_S)


@router.get("/ping", response_model=Pong, dependencies=[allow()], summary="A round trip of a line-check run")
async def get_ping(ctx: Annotated[Context, Depends(get_context)], x_netcheck_code: Code = None) -> Pong:
    await _admit(ctx, x_netcheck_code)
    return Pong()


@router.get("/download", dependencies=[allow()], summary="Random bytes for a few seconds (download throughput)",
            response_class=StreamingResponse)
async def get_download(ctx: Annotated[Context, Depends(get_context)],
                       seconds: Annotated[float, Query(gt=0, le=MAX_STREAM_S)] = 10.0,
                       x_netcheck_code: Code = None) -> StreamingResponse:
    await _admit(ctx, x_netcheck_code)
    deadline = time.monotonic() + seconds

    async def body() -> AsyncIterator[bytes]:
        while time.monotonic() < deadline:
            yield _PIECE

    return StreamingResponse(body(), media_type="application/octet-stream", headers={"Cache-Control": "no-store"})


@router.post("/upload", response_model=Received, dependencies=[allow()],
             summary="A sink for a few seconds of bytes (upload throughput)")
async def post_upload(request: Request, ctx: Annotated[Context, Depends(get_context)],
                      x_netcheck_code: Code = None) -> Received:
    await _admit(ctx, x_netcheck_code)
    start = last = time.monotonic()
    received = 0
    samples: list[tuple[float, int]] = [(round(start, 4), 0)]
    with contextlib.suppress(ClientDisconnect):  # the client gave up: it will not read the answer anyway
        async for chunk in request.stream():
            received += len(chunk)
            now = time.monotonic()
            if now - last >= SAMPLE_S:
                samples.append((round(now, 4), received))
                last = now
            if now - start > MAX_STREAM_S:
                break  # the answer ends the exchange; the connection is closed with the rest unread
    end = time.monotonic()
    samples.append((round(end, 4), received))
    return Received(bytes=received, seconds=round(end - start, 3), samples=samples)
