"""`GET /metrics`: the server's figures in the Prometheus text format (docs/operations.md, "Metrics").

Two kinds of figures:

- **Per process**, counted as requests pass (`Metrics`, a middleware wired in app.py): request
  latency by route template (never by raw path: ids would make a series each), tus PATCH body bytes
  received (ingest), upload requests by method and status, blob store errors, and each relay's
  feed lag in events as of its last long poll. With several worker processes on one host, set
  `PROMETHEUS_MULTIPROC_DIR` (an empty folder, before start): each process then writes its
  figures there and any of them answers for all (prometheus-client's multiprocess mode).
- **Shared**, read from the database when scraped, so every server answers the same whatever
  served the work: the job queue's depth and the age of its oldest due job, uploads in progress,
  and how long ago each relay was last seen.

Scrape each app server directly on its private address: the nginx configuration of
`chairside deploy nginx-config` does not pass `/metrics` from outside.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from chairside.api.deps import get_context
from chairside.api.principal import allow
from chairside.context import Context
from chairside.db.models import Job, Relay, Upload

router = APIRouter(tags=["operations"])

_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)

REQUEST_SECONDS = Histogram("chairside_http_request_duration_seconds",
                            "Time from a request's start to its answer's last byte, by route template.",
                            ("method", "route", "status"), buckets=_BUCKETS)
INGEST_BYTES = Counter("chairside_ingest_bytes", "Bytes of tus PATCH bodies received (uploads).")
UPLOAD_REQUESTS = Counter("chairside_upload_requests", "tus requests by method and status (POST 201: an upload "
                          "created; PATCH 204: bytes accepted).", ("method", "status"))
BLOB_ERRORS = Counter("chairside_blob_store_errors", "Requests that failed on the blob store (missing bytes, an "
                      "S3 error, a disk error).", ("kind",))
FEED_LAG = Gauge("chairside_feed_lag_events", "Events of its contract's feed a relay had not yet read, as of its "
                 "last poll of the changes feed.", ("relay",), multiprocess_mode="mostrecent")

_UPLOADS_PREFIX = "/api/v1/uploads"
_UNMATCHED = "<unmatched>"


def feed_polled(relay_id: uuid.UUID | None, head: int, cursor: int) -> None:
    """Called by the changes feed for each page it answers a relay: the events still ahead of it."""
    if relay_id is not None:
        FEED_LAG.labels(relay=str(relay_id)).set(max(0, head - cursor))


def _blob_error_kind(exc: BaseException) -> str | None:
    module = type(exc).__module__
    if module.startswith("chairside.blobs"):
        return type(exc).__name__
    if module.startswith(("botocore", "boto3")):
        return "s3"
    if isinstance(exc, OSError):
        return "os"
    return None


class Metrics:
    """Times every HTTP request and counts ingest bytes; pure ASGI (the bytes are not copied)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        method: str = scope["method"]
        status = 500
        uploading = scope["path"].startswith(_UPLOADS_PREFIX)
        counting = uploading and method == "PATCH"

        async def receive_counted() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                INGEST_BYTES.inc(len(message.get("body", b"")))
            return message

        async def send_noted(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive_counted if counting else receive, send_noted)
        except BaseException as exc:
            kind = _blob_error_kind(exc)
            if kind is not None:
                BLOB_ERRORS.labels(kind=kind).inc()
            raise
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or _UNMATCHED
            REQUEST_SECONDS.labels(method=method, route=template, status=str(status)).observe(
                time.perf_counter() - start)
            if uploading and method in ("POST", "PATCH"):
                UPLOAD_REQUESTS.labels(method=method, status=str(status)).inc()


class _Shared(Collector):
    """Figures every server reads from the shared database when scraped."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def collect(self) -> Iterable[Metric]:
        now = datetime.now(UTC)
        depth = GaugeMetricFamily("chairside_jobs_queued", "Background jobs waiting or running, by kind.",
                                  labels=("kind",))
        age = GaugeMetricFamily("chairside_jobs_oldest_due_age_seconds", "How long the oldest job that is due has "
                                "waited (0: none is due).")
        dead = GaugeMetricFamily("chairside_jobs_dead", "Jobs given up after their last attempt.")
        uploads = GaugeMetricFamily("chairside_uploads_in_progress", "tus uploads begun and not finished.")
        seen = GaugeMetricFamily("chairside_relay_last_seen_age_seconds", "Seconds since each relay last reached "
                                 "the cloud.", labels=("relay",))
        with self.ctx.db.read() as s:
            pending = Job.done_at.is_(None) & Job.dead_at.is_(None)
            for kind, count in s.execute(select(Job.kind, func.count()).where(pending).group_by(Job.kind)):
                depth.add_metric([kind], count)
            oldest = s.scalar(select(func.min(Job.run_after)).where(pending, Job.run_after <= now))
            age.add_metric([], max(0.0, (now - _aware(oldest)).total_seconds()) if oldest else 0.0)
            dead.add_metric([], s.scalar(select(func.count()).select_from(Job).where(Job.dead_at.is_not(None))) or 0)
            uploads.add_metric([], s.scalar(select(func.count()).select_from(Upload).where(
                Upload.completed_at.is_(None), Upload.expires_at > now)) or 0)
            for relay_id, last in s.execute(select(Relay.id, Relay.last_seen_at).where(
                    Relay.revoked_at.is_(None), Relay.last_seen_at.is_not(None))):
                if last is not None:
                    seen.add_metric([str(relay_id)], max(0.0, (now - _aware(last)).total_seconds()))
        yield from (depth, age, dead, uploads, seen)


def _aware(when: datetime) -> datetime:
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def render(ctx: Context) -> bytes:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        processes = CollectorRegistry()
        MultiProcessCollector(processes)  # type: ignore[no-untyped-call]
        own = generate_latest(processes)
    else:
        own = generate_latest(REGISTRY)
    shared = CollectorRegistry(auto_describe=False)
    shared.register(_Shared(ctx))
    return own + generate_latest(shared)


@router.get("/metrics", dependencies=[allow()], response_class=Response, include_in_schema=False,
            summary="Prometheus metrics of this server")
def metrics(ctx: Annotated[Context, Depends(get_context)]) -> Response:
    return Response(render(ctx), media_type=CONTENT_TYPE_LATEST)
