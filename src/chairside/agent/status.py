"""What `chairside station status` shows, read from the state file (never written by it)."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any

from chairside.agent.state import State, connect

STATE_JA = {"waiting": "待機中", "sending": "送信中", "sent": "送信済み", "failed": "失敗"}
ALIVE_S = 30.0  # the agent beats every 2 s: silent for this long means it is not running


def summary(watch: Path, *, now: float | None = None) -> dict[str, Any]:
    """Counts, the agent's liveness, and every file not yet sent (waiting, sending, failed), oldest first."""
    now = time.time() if now is None else now
    conn = connect(watch, create=False)
    try:
        state = State(conn)
        rows = state.all()
        agent = state.agent()
    except sqlite3.OperationalError as e:  # the agent is making the file right now
        raise FileNotFoundError(str(e)) from e
    finally:
        conn.close()
    counts = {s: 0 for s in STATE_JA}
    for r in rows:
        counts[r.state] += 1
    running = agent is not None and now - float(agent["heartbeat_at"]) < ALIVE_S
    if agent is None:
        line = ("エージェントはまだ起動していません。", "The agent has not run yet.")
    elif running:
        line = (f"エージェントは動作中です（送信先 {agent['server']}）。",
                f"The agent is running (to {agent['server']}).")
    else:
        line = ("エージェントが止まっています。パソコンを再起動するか、サービスを起動してください。",
                "The agent is not running: restart the PC or start the service.")
    files = [{
        "path": r.path, "state": r.state, "state_ja": STATE_JA[r.state], "chart_no": r.chart_no, "size": r.size,
        "sent_bytes": r.sent_bytes, "media_id": r.media_id, "reason_ja": r.reason_ja, "reason_en": r.reason_en,
        "attempts": r.attempts, "next_try_at": r.next_try_at or None,
    } for r in rows if r.state != "sent"]
    order = {"sending": 0, "failed": 1, "waiting": 2}
    files.sort(key=lambda f: order[str(f["state"])])
    return {"agent": {"running": running, "ja": line[0], "en": line[1],
                      "heartbeat_at": agent["heartbeat_at"] if agent else None},
            "counts": counts, "files": files}
