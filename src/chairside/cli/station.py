"""`chairside station agent` and `chairside station status`: the capture PC's folder agent (docs/station-agent.md)."""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from chairside.cli.common import emit, fail
from chairside.client import PinError

app = typer.Typer(no_args_is_help=True, help="The capture PC: send the recordings a folder receives.")

Watch = Annotated[Path, typer.Option("--watch", envvar="CHAIRSIDE_STATION_WATCH",
                                     help="The folder the capture software writes into (or CHAIRSIDE_STATION_WATCH).")]


@app.command()
def agent(
    watch: Watch,
    server: Annotated[str, typer.Option("--server", envvar="CHAIRSIDE_STATION_SERVER",
                                        help="The relay's (or the cloud's) URL.")],
    token: Annotated[str, typer.Option("--token", envvar="CHAIRSIDE_STATION_TOKEN",
                                       help="The station's token (better: CHAIRSIDE_STATION_TOKEN).")],
    layout: Annotated[str, typer.Option("--layout", help="folder: DIR/<chart number>/<file>; sidecar: a JSON "
                                        "next to each file.")] = "folder",
    clinic: Annotated[str | None, typer.Option("--clinic", help="Clinic id for patients it registers (needed when "
                                               "the token sees several clinics).")] = None,
    keep_sent: Annotated[bool, typer.Option("--keep-sent", help="Leave sent files in place instead of moving "
                                            "them to DIR/.sent/.")] = False,
    settle: Annotated[float, typer.Option("--settle-seconds", help="Quiet time after which a file is complete "
                                          "where the OS reports no close (Windows, network shares).")] = 5.0,
    rescan: Annotated[float, typer.Option("--rescan-seconds", help="Full rescan of the folder (safety net).")] = 30.0,
    chunk_mib: Annotated[float, typer.Option("--chunk-mib", help="Bytes per request, in MiB: smaller loses less "
                                             "to a cut on a poor line.")] = 16.0,
    no_chunk_checksums: Annotated[bool, typer.Option("--no-chunk-checksums", help="No per-request SHA-256 even "
                                                     "on http:// (the whole file's SHA-256 is always checked).")]
    = False,
    pin: Annotated[str | None, typer.Option("--pin", envvar="CHAIRSIDE_STATION_PIN", help="The relay's certificate "
                                            "SHA-256 (printed by `relay serve`); default: the one recorded at the "
                                            "first contact. Only that certificate is accepted afterwards.")] = None,
) -> None:
    """Watch a folder and send each complete recording or photo once; runs until stopped (Ctrl+C, SIGTERM)."""
    from rich.console import Console

    from chairside.agent.layout import LAYOUTS
    from chairside.agent.runner import Agent, AgentConfig, AlreadyRunning

    if layout not in LAYOUTS:
        fail(f"--layout must be one of {', '.join(LAYOUTS)}")
    if not server.startswith(("http://", "https://")):
        fail(f"--server must be an http:// or https:// URL, not {server!r}")
    if chunk_mib * (1 << 20) < 64 * 1024:
        fail("--chunk-mib must be at least 0.0625 (64 KiB)")
    if not watch.is_dir():
        fail(f"監視フォルダがありません / the watch folder does not exist: {watch}")
    console = Console(stderr=True)
    config = AgentConfig(watch=watch, server=server, token=token, layout=layout, clinic_id=clinic,
                         keep_sent=keep_sent, settle_s=settle, rescan_s=rescan, chunk_size=int(chunk_mib * (1 << 20)),
                         chunk_checksums=False if no_chunk_checksums else None, pin=pin)
    runner = Agent(config, log=lambda msg: console.log(msg, markup=False, highlight=False))
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: runner.stop())
    console.log(f"監視を開始 / watching {watch.resolve()} → {server}", markup=False, highlight=False)
    try:
        runner.run()
    except AlreadyRunning as e:
        fail(f"このフォルダは別のエージェントが監視中です / {e}")
    except (PinError, OSError) as e:  # a pinned relay given as http://, or no answer to pin at the first contact
        fail(str(e))
    console.log("停止しました / stopped", markup=False, highlight=False)


@app.command()
def pin(
    watch: Watch,
    server: Annotated[str, typer.Option("--server", envvar="CHAIRSIDE_STATION_SERVER",
                                        help="The relay's https:// URL.")],
    expect: Annotated[str | None, typer.Option("--expect", help="The fingerprint `relay serve` printed: the "
                                               "certificate seen must be it.")] = None,
) -> None:
    """Record the relay's certificate for this station (enrollment): the agent then accepts no other."""
    from chairside.agent.relaykey import record_pin
    from chairside.client import fetch_fingerprint
    from chairside.client._pin import normalize

    try:
        seen = fetch_fingerprint(server)
        if expect is not None and normalize(expect) != normalize(seen):
            fail(f"リレーの証明書が指定と違います（指定 {expect}、実際 {seen}） / the relay presents {seen}, not "
                 f"{expect}: nothing recorded")
        emit({"server": server, "pin": record_pin(watch, server, seen)})
    except (PinError, OSError) as e:
        fail(str(e))


@app.command()
def status(
    watch: Watch = Path("."),
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """What is waiting, being sent (with progress) and failed (with the reason), Japanese first."""
    from chairside.agent.status import summary

    try:
        report = summary(watch)
    except FileNotFoundError:
        fail(f"このフォルダはまだ監視されていません / no agent state in {watch} (start `chairside station agent`)")
    if as_json:
        emit(report)
        return
    _print(report)


def _print(report: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.markup import escape

    console = Console(soft_wrap=True)
    agent_line = report["agent"]
    console.print(f"[bold]{escape(agent_line['ja'])}[/] / {escape(agent_line['en'])}")
    counts = report["counts"]
    console.print(f"待機 waiting {counts['waiting']}  送信中 sending {counts['sending']}  "
                  f"失敗 failed {counts['failed']}  送信済み sent {counts['sent']}")
    beat = report["agent"]["heartbeat_at"]
    if not report["agent"]["running"] and beat and counts["waiting"] + counts["sending"]:
        seen = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(beat))
        console.print(f"[yellow]最終確認 {seen} / last seen {seen}[/]")
    if not report["files"]:
        console.print("送るファイルはありません / nothing to send")
        return
    style = {"sending": "cyan", "failed": "red", "waiting": "yellow"}
    for f in report["files"]:
        pct = f" {100 * f['sent_bytes'] / f['size']:.0f}% ({f['sent_bytes']:,}/{f['size']:,} bytes)" \
            if f["state"] == "sending" and f["size"] else ""
        chart = f"  カルテ {escape(f['chart_no'])}" if f["chart_no"] else ""
        console.print(f"[{style[f['state']]}]{f['state_ja']} {f['state']}[/]{pct}  {escape(f['path'])}{chart}")
        if f["reason_ja"]:
            console.print(f"    {escape(f['reason_ja'])}")
            console.print(f"    {escape(f['reason_en'] or '')}")
