"""`chairside demo`: a cloud server seeded with a demo contract, real generated media, and printed credentials.

The demo is for a dentist judging the product in a few minutes: the patients with media come first in
"recent patients", the videos are real 1080p clips of 20 to 60 seconds, some items carry tags (術前 and
術後, so that compare labels its cells), tooth numbers, drawings and notes, and the contract's counter
stands at about 80 % of its plan so that the "storage nearly full" banner shows. Making the media is the
first run's cost (README states the measured figures); later starts reuse the data folder. Ctrl+C stops it
at any time; stopped during the first run's seeding, the data folder is incomplete: delete it to start again.
"""

from __future__ import annotations

import ipaddress
import json
import random
import secrets
import socket
import tempfile
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
from sqlalchemy import select, update

from chairside.app import create_app
from chairside.auth.accounts import create_account
from chairside.auth.principal import Principal
from chairside.cli.cloud import run
from chairside.cli.common import DatabaseUrl, DataDir, load_settings
from chairside.context import Context, build_context
from chairside.db.models import Account, Contract
from chairside.media import annotations as drawings
from chairside.media import notes
from chairside.media.ingest import IngestRequest, file_sha256, ingest
from chairside.media.tags import set_tags
from chairside.media.teeth import set_teeth
from chairside.patients import service as patients_service
from chairside.quota.usage import MS_PER_HOUR
from chairside.tenancy import service as tenancy

# (name, kana, sex): about twenty patients, as a clinic's reception would type them.
PATIENTS = [
    ("山田 太郎", "ヤマダ タロウ", "male"), ("山田 花子", "ヤマダ ハナコ", "female"),
    ("佐藤 健一", "サトウ ケンイチ", "male"), ("鈴木 美咲", "スズキ ミサキ", "female"),
    ("高橋 大輔", "タカハシ ダイスケ", "male"), ("田中 陽子", "タナカ ヨウコ", "female"),
    ("伊藤 翔太", "イトウ ショウタ", "male"), ("渡辺 由美", "ワタナベ ユミ", "female"),
    ("中村 誠", "ナカムラ マコト", "male"), ("小林 さくら", "コバヤシ サクラ", "female"),
    ("加藤 浩二", "カトウ コウジ", "male"), ("吉田 恵", "ヨシダ メグミ", "female"),
    ("山本 拓也", "ヤマモト タクヤ", "male"), ("松本 愛", "マツモト アイ", "female"),
    ("井上 隆", "イノウエ タカシ", "male"), ("木村 彩", "キムラ アヤ", "female"),
    ("林 大樹", "ハヤシ ダイキ", "male"), ("清水 麻衣", "シミズ マイ", "female"),
    ("斎藤 修", "サイトウ オサム", "male"), ("森 優子", "モリ ユウコ", "female"),
]
CREDENTIALS = "demo-credentials.json"
PLAN_HOURS = 100
#: The contract's stored video hours are set to this share of its plan, so that the banner (from 80 %) shows:
#: the demo stands for a clinic with years of recordings, which it does not generate.
QUOTA_SHARE = 0.82
#: (patient index, length in seconds, tags): the clips, 20-60 s of 1080p H.264 at a microscope's bitrate.
VIDEOS = [(0, 20, ["術前"]), (0, 45, ["術後", "説明用"]), (1, 30, ["初診"]), (2, 60, []), (3, 25, ["術前"]),
          (3, 40, ["術後"])]
#: Tooth numbers (FDI) by position in the media plan: the 術前/術後 pairs show 46 (右下6) and 11, 21.
TEETH = {0: [46], 1: [46], 4: [11, 21], 5: [11, 21], 6: [46]}
#: Notes a dentist leaves: on the 術後 clip of the first patient, and on that patient.
ITEM_NOTE = (1, "右下6 根管治療後。次回、被せ物の説明に使う。")
PATIENT_NOTE = "ペニシリン系にアレルギーあり。午前の予約を希望。"
VIDEO_BITRATE = 4_000_000
#: How many of the patients have media; they are registered last, so they lead "recent patients".
WITH_MEDIA = 10


def _viewer_account(ctx: Context, creds: dict[str, object]) -> dict[str, object]:
    """The demo's viewer login (made once, also for a data folder seeded before the viewer existed)."""
    if "viewer" not in creds:
        password = secrets.token_urlsafe(9)
        with ctx.db.read() as s:
            taken = set(s.scalars(select(Account.login).where(Account.login.like("demo%"))))
        login = next(name for name in ("demo", *(f"demo-{n}" for n in range(2, 1000))) if name not in taken)
        create_account(ctx, uuid.UUID(str(creds["contract_id"])), login, password, is_admin=True)
        creds["viewer"] = {"login": login, "password": password}
        cred_file = ctx.settings.data_dir / CREDENTIALS
        cred_file.write_text(json.dumps(creds, ensure_ascii=False, indent=2))
        cred_file.chmod(0o600)
    return creds


def seed(ctx: Context, console: Console) -> dict[str, object]:
    """Create the demo contract once; later starts reuse it."""
    cred_file = ctx.settings.data_dir / CREDENTIALS
    with ctx.db.session() as s:
        seeded = s.scalar(select(Contract.id).limit(1)) is not None
    if seeded and cred_file.exists():
        stored: dict[str, object] = json.loads(cred_file.read_text())
        return _viewer_account(ctx, stored)
    if seeded:  # stopped (Ctrl+C) during the first run's seeding: the credentials are written last
        console.print(f"[red]デモのデータが途中までです（作成中に停止）。{ctx.settings.data_dir} を削除してから"
                      f"もう一度実行してください。 The demo data is incomplete (stopped while being made): delete "
                      f"{ctx.settings.data_dir} and run the demo again.[/red]")
        raise typer.Exit(1)
    rng = random.Random(20261124)
    contract = tenancy.create_contract(ctx, "医療法人 デモ歯科", PLAN_HOURS)
    clinic_ids = [tenancy.create_clinic(ctx, contract.id, name).id for name in ("デモ歯科 本院", "デモ歯科 駅前分院")]
    operator = Principal("operator", contract.id, None, name="chairside demo")
    births = [date(1950 + rng.randrange(60), rng.randrange(1, 13), rng.randrange(1, 29)) for _ in PATIENTS]
    made: dict[int, tuple[uuid.UUID, uuid.UUID]] = {}
    # "Recent patients" lists the newest first: those without media are registered first, patient 0
    # (the one with the most media) last.
    for i in reversed(range(len(PATIENTS))):
        name, kana, sex = PATIENTS[i]
        p = patients_service.create(ctx, operator, clinic_ids[i % 2], f"{1001 + i:05d}", name, kana, births[i], sex)
        made[i] = (p.id, p.clinic_id)
    patients = [made[i] for i in range(len(PATIENTS))]
    contract_id = contract.id
    stations = []
    for clinic_id, names in zip(clinic_ids, (["Chair 1", "Chair 2"], ["Chair 1", "Chair 2"]), strict=True):
        for name in names:
            station, token = tenancy.create_station(ctx, clinic_id, name)
            stations.append({"id": str(station.id), "clinic_id": str(clinic_id), "name": name, "token": token})
    _seed_media(ctx, console, operator, patients, rng)
    notes.set_note(ctx, operator, "patient", patients[0][0], PATIENT_NOTE)
    _near_full(ctx, contract_id)
    creds: dict[str, object] = {"contract_id": str(contract_id), "clinic_ids": [str(c) for c in clinic_ids],
                                "stations": stations}
    cred_file.write_text(json.dumps(creds, ensure_ascii=False, indent=2))
    cred_file.chmod(0o600)
    return _viewer_account(ctx, creds)


def _seed_media(
    ctx: Context, console: Console, operator: Principal,
    patients: list[tuple[uuid.UUID, uuid.UUID]], rng: random.Random,
) -> None:
    from chairside.mediafile import generate  # here: every `chairside` command loads this module
    now = datetime.now(UTC).replace(microsecond=0)
    plan: list[tuple[str, int, int, float, list[str]]] = []  # (kind, patient index, days ago, seconds, tags)
    for n, (pi, length, tags) in enumerate(VIDEOS):
        plan.append(("video", pi, 40 * (n % 2) + pi + 1, float(length), tags))  # 術前 40 days before 術後
    for i in range(14):
        plan.append(("jpeg", i % WITH_MEDIA, 7 * i + 2, 0.0, ["初診"] if i < 2 else ["説明用"] if i == 5 else []))
    for i in range(3):
        plan.append(("heic", i, 3 + i, 0.0, []))
    weights = [seconds * 30 if kind == "video" else 20 for kind, _, _, seconds, _ in plan]  # ~ encoding work
    columns = (TextColumn("{task.description}"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
               TimeRemainingColumn())
    with tempfile.TemporaryDirectory(dir=ctx.settings.data_dir) as tmp, Progress(*columns, console=console) as progress:
        task = progress.add_task("Making demo media (1080p H.264 clips of 20-60 s, JPEG and HEIC photos)",
                                 total=sum(weights))
        for n, (kind, pi, days_ago, seconds, tags) in enumerate(plan):
            captured = now - timedelta(days=days_ago, minutes=rng.randrange(600))
            path = Path(tmp) / f"demo-{n}.{ {'video': 'mp4', 'jpeg': 'jpg', 'heic': 'heic'}[kind] }"
            if kind == "video":
                generate.make_video(path, seconds=seconds, width=1920, height=1080, fps=30, label=f"demo {n}",
                                    bitrate=VIDEO_BITRATE, seed=n)
            elif kind == "jpeg":
                generate.make_jpeg(path, width=1600, height=1200, captured_at=captured, seed=n)
            else:
                generate.make_heic(path, width=1200, height=900, captured_at=captured)
            patient_id, clinic_id = patients[pi]
            media_id = uuid.uuid4()
            ingest(ctx.db, ctx.blobs, IngestRequest(
                path=path, sha256=file_sha256(path), size=path.stat().st_size, media_id=media_id,
                contract_id=operator.contract_id, clinic_id=clinic_id, patient_id=patient_id,
                filename=path.name, captured_at=captured, source="migration",
            ))
            path.unlink(missing_ok=True)  # ingest moved it into the store; never more than one file here
            if tags:
                set_tags(ctx, operator, media_id, tags)
            if n in TEETH:
                set_teeth(ctx, operator, media_id, TEETH[n])
            if n == ITEM_NOTE[0]:
                notes.set_note(ctx, operator, "media", media_id, ITEM_NOTE[1])
            if n in (1, 6):  # a drawing on the 術後 clip (at 2 s) and on a photo
                drawings.create(ctx, operator, media_id, _drawing(), media_time_s=2.0 if kind == "video" else None)
            progress.advance(task, weights[n])


def _drawing() -> list[drawings.Shape]:
    """A circle round the tooth, an arrow to it and a word, as a dentist draws when explaining."""
    red = "#e53935"
    return [
        drawings.Circle(type="circle", color=red, width=0.006, start=(0.40, 0.35), end=(0.58, 0.62)),
        drawings.Arrow(type="arrow", color="#fdd835", width=0.006, start=(0.15, 0.2), end=(0.38, 0.4)),
        drawings.Text(type="text", color="#ffffff", at=(0.08, 0.1), text="ここ / here", size=0.05),
    ]


def _near_full(ctx: Context, contract_id: uuid.UUID) -> None:
    """Set the contract's stored hours to QUOTA_SHARE of its plan (the demo's clips are minutes, not 80 hours)."""
    with ctx.db.session() as s:
        stored = s.scalar(select(Contract.stored_video_ms).where(Contract.id == contract_id)) or 0
        target = int(PLAN_HOURS * MS_PER_HOUR * QUOTA_SHARE)
        s.execute(update(Contract).where(Contract.id == contract_id).values(stored_video_ms=max(stored, target)))


def lan_address() -> str | None:
    """This machine's address on the LAN (the one its default route uses); no packet is sent."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect(("192.0.2.1", 9))  # TEST-NET-1: a UDP connect only picks the outgoing interface
            address: str = probe.getsockname()[0]
    except OSError:
        return None
    return None if address.startswith("127.") else address


def _every_interface(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_unspecified  # 0.0.0.0 or ::
    except ValueError:
        return False


def demo(
    data: DataDir = Path("./chairside-data"),
    host: Annotated[str, typer.Option(help="Address to listen on (0.0.0.0: also from a tablet on the LAN).")]
    = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    database_url: DatabaseUrl = None,
    seed_only: Annotated[bool, typer.Option("--seed-only", help="Seed, print, and exit without serving.")] = False,
) -> None:
    """Start a demo cloud server, seeded at first start with a demo contract and real media."""
    console = Console(soft_wrap=True)
    ctx = build_context(load_settings(data, database_url), role="cloud")
    creds = seed(ctx, console)
    url = f"http://{host}:{port}"
    console.print(f"\n[bold]Chairside demo[/bold] — {url}")
    viewer = creds["viewer"]
    assert isinstance(viewer, dict)
    console.print(f"  Viewer:        {url}/  (login {viewer['login']}, password {viewer['password']})")
    address = lan_address() if _every_interface(host) else None
    if address:
        console.print(f"  On the LAN:    http://{address}:{port}/  (a tablet or phone on the same network)")
    console.print(f"  API docs:      {url}/docs")
    console.print(f"  Data folder:   {ctx.settings.data_dir}")
    console.print(f"  Credentials:   {ctx.settings.data_dir / CREDENTIALS}")
    stations = creds["stations"]
    assert isinstance(stations, list)
    for st in stations:
        console.print(f"  Station {st['name']} ({st['clinic_id'][:8]}…): Authorization: Bearer {st['token']}")
    console.print(f'  Try: curl -G -H "Authorization: Bearer {stations[0]["token"]}" '
                  f'--data-urlencode "q=やまだ" {url}/api/v1/patients\n')
    if not seed_only:
        console.print("  Ctrl+C stops the server; the next start reuses the data folder.\n")
        run(create_app(ctx), host, port)
