"""`chairside demo`: a cloud server seeded with a demo contract, real generated media, and printed credentials."""

from __future__ import annotations

import json
import random
import secrets
import tempfile
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import Progress
from sqlalchemy import select

from chairside.app import create_app
from chairside.auth.accounts import create_account
from chairside.auth.principal import Principal
from chairside.cli.cloud import run
from chairside.cli.common import DatabaseUrl, DataDir, load_settings
from chairside.context import Context, build_context
from chairside.db.models import Account, Contract
from chairside.media.ingest import IngestRequest, file_sha256, ingest
from chairside.patients import service as patients_service
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
    rng = random.Random(20261124)
    contract = tenancy.create_contract(ctx, "医療法人 デモ歯科", 100)
    clinic_ids = [tenancy.create_clinic(ctx, contract.id, name).id for name in ("デモ歯科 本院", "デモ歯科 駅前分院")]
    operator = Principal("operator", contract.id, None, name="chairside demo")
    patients = []
    for i, (name, kana, sex) in enumerate(PATIENTS):
        birth = date(1950 + rng.randrange(60), rng.randrange(1, 13), rng.randrange(1, 29))
        p = patients_service.create(ctx, operator, clinic_ids[i % 2], f"{1001 + i:05d}", name, kana, birth, sex)
        patients.append((p.id, p.clinic_id))
    contract_id = contract.id
    stations = []
    for clinic_id, names in zip(clinic_ids, (["Chair 1", "Chair 2"], ["Chair 1", "Chair 2"]), strict=True):
        for name in names:
            station, token = tenancy.create_station(ctx, clinic_id, name)
            stations.append({"id": str(station.id), "clinic_id": str(clinic_id), "name": name, "token": token})
    _seed_media(ctx, console, contract_id, patients, rng)
    creds: dict[str, object] = {"contract_id": str(contract_id), "clinic_ids": [str(c) for c in clinic_ids],
                                "stations": stations}
    cred_file.write_text(json.dumps(creds, ensure_ascii=False, indent=2))
    cred_file.chmod(0o600)
    return _viewer_account(ctx, creds)


def _seed_media(
    ctx: Context, console: Console, contract_id: uuid.UUID,
    patients: list[tuple[uuid.UUID, uuid.UUID]], rng: random.Random,
) -> None:
    from chairside.mediafile import generate  # here: every `chairside` command loads this module
    now = datetime.now(UTC).replace(microsecond=0)
    plan = []  # (kind, patient index, days ago)
    for i in range(6):
        plan.append(("video", i % 4, 30 * (i // 2) + 1))
    for i in range(14):
        plan.append(("jpeg", i % 10, 7 * i + 2))
    for i in range(3):
        plan.append(("heic", i, 3 + i))
    with tempfile.TemporaryDirectory(dir=ctx.settings.data_dir) as tmp, Progress(console=console) as progress:
        task = progress.add_task("Making demo media (1080p H.264 clips, JPEG and HEIC photos)", total=len(plan))
        for n, (kind, pi, days_ago) in enumerate(plan):
            captured = now - timedelta(days=days_ago, minutes=rng.randrange(600))
            path = Path(tmp) / f"demo-{n}.{ {'video': 'mp4', 'jpeg': 'jpg', 'heic': 'heic'}[kind] }"
            if kind == "video":
                generate.make_video(path, seconds=3.0, width=1920, height=1080, fps=30, label=f"demo {n}")
            elif kind == "jpeg":
                generate.make_jpeg(path, width=1600, height=1200, captured_at=captured, seed=n)
            else:
                generate.make_heic(path, width=1200, height=900, captured_at=captured)
            patient_id, clinic_id = patients[pi]
            ingest(ctx.db, ctx.blobs, IngestRequest(
                path=path, sha256=file_sha256(path), size=path.stat().st_size, media_id=uuid.uuid4(),
                contract_id=contract_id, clinic_id=clinic_id, patient_id=patient_id,
                filename=path.name, captured_at=captured, source="migration",
            ))
            progress.advance(task)


def demo(
    data: DataDir = Path("./chairside-data"),
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
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
        run(create_app(ctx), host, port)
