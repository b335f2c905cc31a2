"""Migration 0003 on a database that already holds videos: the counter starts exact."""

from __future__ import annotations

import uuid

from sqlalchemy import text

from chairside.db import migrate
from chairside.db.engine import make_engine
from chairside.quota.usage import video_ms


def test_upgrade_counts_the_videos_already_stored_and_starts_the_plan_history(fresh_database_url: str) -> None:
    engine = make_engine(fresh_database_url)
    migrate.upgrade(engine, "0002")
    contract, clinic, patient = (uuid.uuid4().hex for _ in range(3))  # hex: what both databases accept
    durations = [1.0005, 600.25, 0.0334, None]  # the last: a video whose probe gave no duration
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO contracts (id, name, plan_hours, created_at) VALUES (:i, 'K', 300, :t)"),
                     {"i": contract, "t": "2026-01-05 01:00:00"})
        conn.execute(text("INSERT INTO clinics (id, contract_id, name, created_at) VALUES (:i, :c, 'A', :t)"),
                     {"i": clinic, "c": contract, "t": "2026-01-05 01:00:00"})
        conn.execute(text("INSERT INTO patients (id, contract_id, clinic_id, chart_no, name, name_kana, sex, "
                          "created_at, updated_at) VALUES (:i, :c, :k, '1', 'n', 'n', 'male', :t, :t)"),
                     {"i": patient, "c": contract, "k": clinic, "t": "2026-01-05 01:00:00"})
        rows = [("video", d, None) for d in durations] + [("image", None, None), ("video", 7.0, "2026-02-01")]
        for kind, duration, deleted in rows:
            conn.execute(text(
                "INSERT INTO media (id, contract_id, clinic_id, patient_id, kind, mime, sha256, size, filename, "
                "captured_at, duration_s, source, created_at, deleted_at) VALUES (:i, :c, :k, :p, :kind, 'x', "
                "'ab', 1, 'f', :t, :d, 'station', :t, :del)"),
                {"i": uuid.uuid4().hex, "c": contract, "k": clinic, "p": patient, "kind": kind, "t": "2026-01-06",
                 "d": duration, "del": deleted})
    migrate.upgrade(engine)
    with engine.connect() as conn:
        stored = conn.execute(text("SELECT stored_video_ms FROM contracts")).scalar_one()
        history = conn.execute(text("SELECT hours, previous_hours, reason FROM plan_changes")).all()
    engine.dispose()
    assert stored == sum(video_ms(d) for d in [*durations, 7.0])  # the trashed video counts too
    assert stored == 1001 + 600_250 + 33 + 0 + 7000
    assert [tuple(r) for r in history] == [(300, None, "onboarding")]
