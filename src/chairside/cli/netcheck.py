"""`chairside netcheck` (the clinic's line check at onboarding) and `chairside admin contract netcheck-code`.

Parsing and printing only: the measuring is netcheck/measure.py, the verdict netcheck/verdict.py, the codes
netcheck/codes.py (docs/netcheck.md).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from typing import Annotated

import typer
from rich.console import Console
from rich.panel import Panel
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from chairside.cli.common import emit, fail, parse_uuid
from chairside.context import Context
from chairside.netcheck import codes
from chairside.netcheck.measure import Check, Plan, Refused, Result, Window
from chairside.netcheck.verdict import Need

PHASES = {
    "start": "開始 / starting",
    "idle": "待機時の応答時間 / idle round trips",
    "download-1": "下り 1 接続 / download, one connection",
    "download-N": "下り 複数接続 / download, several connections",
    "upload-1": "上り 1 接続 / upload, one connection",
    "upload-N": "上り 複数接続 / upload, several connections",
    "stability": "安定性 / stability",
    "done": "完了 / done",
}
BARS = "▁▂▃▄▅▆▇█"


def netcheck(
    server: Annotated[str, typer.Option("--server", help="The Chairside cloud's address, e.g. https://cloud.example.")],
    code: Annotated[str, typer.Option("--code", help="The onboarding code from your Chairside contact.")],
    minutes: Annotated[float, typer.Option("--minutes", help="How long the whole check runs (decimals allowed); "
                                           "the stability summary covers it.")] = 5.0,
    chairs: Annotated[int, typer.Option("--chairs", min=1, help="Chairs that record video.")] = 2,
    hours_per_day: Annotated[float, typer.Option("--hours-per-day", help="Hours of video each chair records a "
                                                 "day.")] = 2.0,
    night_hours: Annotated[float, typer.Option("--night-hours", help="Hours of the night the relay uploads "
                                               "in.")] = 10.0,
    test_seconds: Annotated[float | None, typer.Option("--test-seconds", help="Seconds of each throughput test "
                                                       "(default: from --minutes, 2 to 6).")] = None,
    connections: Annotated[int, typer.Option("--connections", min=2, max=16, help="Connections of the "
                                             "'several connections' tests.")] = 4,
    as_json: Annotated[bool, typer.Option("--json", help="Print the figures and the verdict as JSON.")] = False,
) -> None:
    """Measure this clinic's line against the cloud and say whether it carries the clinic's recordings."""
    if not 0 < minutes <= 60:
        fail("--minutes must be more than 0 and at most 60")
    if hours_per_day <= 0 or hours_per_day > 24 or not 0 < night_hours <= 24:
        fail("--hours-per-day and --night-hours must be within 0 to 24")
    try:
        check = Check(server, code, Plan(minutes=minutes, test_seconds=test_seconds, connections=connections),
                      Need(chairs=chairs, hours_per_day=hours_per_day, night_hours=night_hours))
    except ValueError as e:
        fail(str(e))
    console = Console(stderr=as_json)
    outcome: list[Result | BaseException] = []

    def work() -> None:
        try:
            outcome.append(check.run())
        except BaseException as e:  # handed to the main thread
            outcome.append(e)

    worker = threading.Thread(target=work, name="netcheck", daemon=True)
    try:
        if as_json:
            worker.start()
            while worker.is_alive():
                worker.join(0.5)
        else:
            _with_progress(console, check, worker)
    except KeyboardInterrupt:
        check.stop()
        worker.join(15)
        typer.echo("中断しました。もう一度実行すると最初から測り直します。 / Stopped. Run it again to measure anew.",
                   err=True)
        raise typer.Exit(130) from None
    got = outcome[0] if outcome else RuntimeError("the check ended without a result")
    if isinstance(got, Refused):
        fail(got.detail)
    if isinstance(got, BaseException):
        raise got
    if as_json:
        typer.echo(json.dumps(got.to_json(), ensure_ascii=False, indent=2))
    else:
        show(console, got)


def _with_progress(console: Console, check: Check, worker: threading.Thread) -> None:
    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
                  TimeRemainingColumn(), console=console) as progress:
        task = progress.add_task(PHASES["start"], total=check.expected_s)
        worker.start()
        while worker.is_alive():
            progress.update(task, completed=min(check.elapsed, check.expected_s),
                            description=PHASES.get(check.phase, check.phase))
            worker.join(0.2)
        progress.update(task, completed=check.expected_s, description=PHASES["done"])


def sparkline(windows: list[Window]) -> str:
    """One character per window: its median round trip (low ▁ to high █), ✕ all lost, ! some lost."""
    rtts = [w.median_rtt_ms for w in windows if w.median_rtt_ms is not None]
    lo, hi = (min(rtts), max(rtts)) if rtts else (0.0, 0.0)
    out = []
    for w in windows:
        if w.median_rtt_ms is None:
            out.append("✕")
        elif w.lost:
            out.append("!")
        else:
            level = 0 if hi - lo < 1e-9 else int((w.median_rtt_ms - lo) / (hi - lo) * (len(BARS) - 1))
            out.append(BARS[level])
    return "".join(out)


def _fmt(value: float | None, unit: str, digits: int = 1) -> str:
    return "–" if value is None else f"{value:.{digits}f} {unit}"


def show(console: Console, result: Result) -> None:
    data = result.to_json()
    table = Table(title="回線チェックの結果 / Line check", show_header=True)
    table.add_column("項目 / Figure")
    table.add_column("1 接続 / one", justify="right")
    table.add_column(f"{result.plan.connections} 接続 / several", justify="right")
    table.add_row("上り / upload", _fmt(data["upload_single_mbps"], "Mbps"), _fmt(data["upload_multi_mbps"], "Mbps"))
    table.add_row("下り / download", _fmt(data["download_single_mbps"], "Mbps"),
                  _fmt(data["download_multi_mbps"], "Mbps"))
    console.print(table)
    facts = Table(show_header=False, box=None)
    facts.add_row("必要な上り / upload needed", _fmt(data["required_upload_mbps"], "Mbps"))
    facts.add_row("往復時間 / round trip (idle)", _fmt(data["rtt_ms"], "ms"))
    facts.add_row("揺らぎ / jitter", _fmt(data["jitter_ms"], "ms"))
    facts.add_row("送受信中の往復時間 / round trip under load",
                  f"↑ {_fmt(data['rtt_upload_load_ms'], 'ms')}  ↓ {_fmt(data['rtt_download_load_ms'], 'ms')}")
    facts.add_row("再送 / retransmissions", _fmt(data["retransmit_percent"], "%", 2))
    facts.add_row("最長の途切れ / longest dropout", _fmt(data["longest_dropout_s"], "s"))
    facts.add_row("応答なし / unanswered round trips", _fmt(data["ping_loss_percent"], "%", 1))
    wifi = {True: "無線 LAN / Wi-Fi", False: "有線 / wired", None: "不明 / unknown"}[result.on_wifi]
    facts.add_row("この PC の接続 / this computer", f"{result.interface or '?'} ({wifi})")
    console.print(facts)
    console.print(f"安定性 / stability ({result.plan.sample_s:g} s each): [bold]{sparkline(result.windows)}[/bold]"
                  "  (▁ fast … █ slow, ! some lost, ✕ no answer)")
    v = result.verdict
    lines = [f"[bold]{v.text_ja}[/bold]", f"[bold]{v.text_en}[/bold]", ""]
    lines += [f"• {r}" for r in v.reasons]
    if v.advice:
        lines += ["", "アドバイス / Advice:"] + [f"• {a}" for a in v.advice]
    console.print(Panel("\n".join(lines), title="判定 / Verdict", border_style="green" if v.ok else "red"))


# --- the operator's side: `chairside admin contract netcheck-code` ---

_get_ctx: Callable[[], Context] | None = None


def netcheck_code(contract: Annotated[str, typer.Option("--contract", help="The contract's id.")]) -> None:
    """A one-time-ish onboarding code for `chairside netcheck` (expiring, a few runs); prints it once."""
    assert _get_ctx is not None, "register() was not called"
    ctx = _get_ctx()
    try:
        code, expires = codes.new_code(ctx, parse_uuid(contract, "contract"))
    except LookupError:
        fail(f"there is no contract {contract}")
    emit({"code": code, "expires_at": expires.isoformat(), "contract_id": contract,
          "runs": ctx.settings.netcheck_code_runs})


def register(contract_app: typer.Typer, get_ctx: Callable[[], Context]) -> None:
    """Add `netcheck-code` to `chairside admin contract` (called once by cli/admin.py)."""
    global _get_ctx
    _get_ctx = get_ctx
    contract_app.command("netcheck-code")(netcheck_code)
