"""`GET /metrics`, scraped as Prometheus would, after real work: every promised figure is there and moves."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from chairside.client import Client
from chairside.context import Context
from chairside.jobs import queue
from tests.conftest import LiveServer
from tests.factories import Tenant, make_patient, make_relay_token


def scrape(server: LiveServer) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    r = httpx.get(f"{server.url}/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(r.text):  # fails on anything that is not the text format
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def value(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_metrics_count_latency_ingest_uploads_jobs_feed_and_blob_errors(
    ctx: Context, server: LiveServer, tenant: Tenant, media_dir: Path
) -> None:
    before = scrape(server)
    patient = make_patient(ctx, tenant.contract_id, tenant.clinic_ids[0])
    clip = media_dir / "clip.mp4"
    with Client(server.url, tenant.token) as api:
        video = api.upload(clip, patient.id)
        for _ in range(3):
            assert httpx.get(f"{server.url}/api/v1/media/{video['id']}/content",
                             headers={"Authorization": f"Bearer {tenant.token}"}).status_code == 200
    relay_token = make_relay_token(ctx, tenant.clinic_ids[0])
    r = httpx.get(f"{server.url}/api/v1/feed", params={"after": 0, "limit": 2},
                  headers={"Authorization": f"Bearer {relay_token}"})
    assert r.status_code == 200
    lag = r.json()["head"] - r.json()["next"]
    assert lag > 0
    with ctx.db.session() as s:
        queue.enqueue(s, "metrics-test", {"n": 1})
    # A blob lost from the store under a row: the read fails, and is counted as the store's error.
    path = ctx.blobs.local_path(video["sha256"])
    assert path is not None
    os.chmod(path.parent, 0o700)
    path.unlink()
    with pytest.raises(httpx.RemoteProtocolError):  # the answer had begun (200, its length): it is cut short
        httpx.get(f"{server.url}/api/v1/media/{video['id']}/content",
                  headers={"Authorization": f"Bearer {tenant.token}"})

    after = scrape(server)
    route = "/api/v1/media/{media_id}/content"
    key = "chairside_http_request_duration_seconds_count"
    assert value(after, key, method="GET", route=route, status="200") - value(
        before, key, method="GET", route=route, status="200") == 4  # 3 reads, and the one cut short
    assert not any(name == key and str(video["id"]) in str(labels) for name, labels in after), "no ids in labels"
    grown = value(after, "chairside_ingest_bytes_total") - value(before, "chairside_ingest_bytes_total")
    assert grown == clip.stat().st_size
    created = "chairside_upload_requests_total"
    assert value(after, created, method="POST", status="201") - value(before, created, method="POST",
                                                                      status="201") == 1
    assert value(after, created, method="PATCH", status="204") >= 1
    assert value(after, "chairside_jobs_queued", kind="metrics-test") == 1
    assert ("chairside_jobs_oldest_due_age_seconds", ()) in after
    assert ("chairside_uploads_in_progress", ()) in after
    relay_ids = [dict(labels)["relay"] for name, labels in after if name == "chairside_feed_lag_events"]
    assert any(value(after, "chairside_feed_lag_events", relay=r) == lag for r in relay_ids)
    assert any(name == "chairside_relay_last_seen_age_seconds" for name, _ in after)
    errors = sum(v for (name, _), v in after.items() if name == "chairside_blob_store_errors_total")
    errors_before = sum(v for (name, _), v in before.items() if name == "chairside_blob_store_errors_total")
    assert errors - errors_before == 1


def test_unknown_paths_share_one_series(server: LiveServer) -> None:
    for _ in range(3):
        assert httpx.get(f"{server.url}/no/such/{uuid.uuid4()}").status_code == 404
    samples = scrape(server)
    names = {dict(labels).get("route") for name, labels in samples
             if name == "chairside_http_request_duration_seconds_count"}
    assert "<unmatched>" in names
    assert not any(n and n.startswith("/no/such") for n in names)
