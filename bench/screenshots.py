"""Screenshots of the viewer for the docs, at 1440×900 (PC), 1024×768 (tablet) and 390×844 (phone).

Seeds the demo (as `scripts/demo` does) into a fresh folder, adds a viewer account and a visit with
before/after clips, tagged photos and a drawing, serves it on loopback, and drives Debian's Chromium
through the screens. Writes PNGs to docs/screenshots/.

    .venv/bin/python bench/screenshots.py [--out docs/screenshots]
"""

from __future__ import annotations

import argparse
import datetime as dt
import random
import shutil
import uuid
from pathlib import Path
from typing import Any

import httpx

from _common import ROOT, Server, workdir

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run", "--font-render-hinting=none"]
LOGIN, PASSWORD = "sakura", "demo-password-0123"
SIZES = {"pc": (1440, 900), "tablet": (1024, 768), "phone": (390, 844)}


def seed(data_dir: Path) -> dict[str, Any]:
    """The demo contract, plus a viewer account and one patient's visit worth showing."""
    from rich.console import Console
    from sqlalchemy import select

    from chairside.auth.accounts import create_account
    from chairside.cli.demo import seed as seed_demo
    from chairside.context import build_context
    from chairside.db.models import Annotation, MediaTag, Patient
    from chairside.media.ingest import IngestRequest, file_sha256, ingest
    from chairside.mediafile import generate
    from chairside.settings import Settings
    ctx = build_context(Settings.load(environ={}, data_dir=data_dir))
    try:
        creds = seed_demo(ctx, Console(quiet=True))
        contract_id = uuid.UUID(str(creds["contract_id"]))
        create_account(ctx, contract_id, LOGIN, PASSWORD, is_admin=True)  # the clinic's admin: 管理 shows
        with ctx.db.read() as s:
            patient = s.scalar(select(Patient).where(Patient.chart_no == "01001"))
            assert patient is not None
            patient_id, clinic_id = patient.id, patient.clinic_id
            other = s.scalar(select(Patient).where(Patient.chart_no == "01002"))
            assert other is not None
        with ctx.db.session() as s:  # the same chart number registered at a relay during an outage: flagged
            s.add(Patient(contract_id=contract_id, clinic_id=other.clinic_id, chart_no=other.chart_no,
                          name=other.name, name_kana=other.name_kana, birth_date=None, sex="unknown",
                          merge_with=other.id))
        visit = (dt.datetime.now(dt.UTC) - dt.timedelta(days=1)).replace(hour=1, minute=15, second=0, microsecond=0)
        made: dict[str, uuid.UUID] = {}
        rng = random.Random(6)
        plan = [("before.mp4", "video", 0, ["術前"]), ("after.mp4", "video", 40, ["術後"]),
                *((f"photo-{i}.jpg", "image", 5 + i, ["術前" if i < 3 else "術後", "説明用"][: 1 + i % 2])
                  for i in range(6))]
        for name, kind, minutes, _ in plan:
            path = data_dir / name
            if kind == "video":
                generate.make_video(path, seconds=6.0, width=1920, height=1080, fps=30, bitrate=8_000_000,
                                    label=name.split(".")[0], seed=rng.randrange(1000))
            else:
                generate.make_jpeg(path, width=1600, height=1200, seed=rng.randrange(1000),
                                   captured_at=visit + dt.timedelta(minutes=minutes))
            media_id = uuid.uuid4()
            ingest(ctx.db, ctx.blobs, IngestRequest(
                path=path, sha256=file_sha256(path), size=path.stat().st_size, media_id=media_id,
                contract_id=contract_id, clinic_id=clinic_id, patient_id=patient_id, filename=name,
                captured_at=visit + dt.timedelta(minutes=minutes), source="viewer"))
            made[name] = media_id
        with ctx.db.session() as s:
            for name, _, _, tags in plan:
                s.add_all(MediaTag(media_id=made[name], tag=t, contract_id=contract_id) for t in tags)
            s.add(Annotation(contract_id=contract_id, media_id=made["before.mp4"], media_time_s=2.0001, version=1,
                             author_name=LOGIN, shapes=[
                                 {"type": "circle", "color": "#fdd835", "width": 0.006, "start": [0.56, 0.42],
                                  "end": [0.76, 0.78]},
                                 {"type": "arrow", "color": "#e53935", "width": 0.008, "start": [0.3, 0.2],
                                  "end": [0.53, 0.5]},
                                 {"type": "text", "color": "#ffffff", "width": 0.004, "at": [0.12, 0.1],
                                  "text": "ここを治療します", "size": 0.06}]))
            s.add(Annotation(contract_id=contract_id, media_id=made["photo-1.jpg"], media_time_s=None, version=1,
                             author_name=LOGIN, shapes=[
                                 {"type": "pen", "color": "#43a047", "width": 0.006,
                                  "points": [[0.2 + i / 100, 0.6 + ((i % 10) - 5) ** 2 / 400] for i in range(40)]},
                                 {"type": "text", "color": "#fdd835", "width": 0.004, "at": [0.2, 0.45],
                                  "text": "歯ぐきの境目", "size": 0.05}]))
        files = data_dir.parent / "files"
        files.mkdir(exist_ok=True)
        generate.make_jpeg(files / "IMG_2041.JPG", width=2400, height=1800, seed=41)
        generate.make_heic(files / "IMG_2042.HEIC", width=1600, height=1200)
        generate.make_video(files / "VID_0007.MP4", seconds=8.0, width=1280, height=720, fps=30, bitrate=6_000_000,
                            label="import")
        return {"patient_id": str(patient_id), "media": {k: str(v) for k, v in made.items()},
                "files": {p.name: p for p in files.iterdir()}}
    finally:
        ctx.db.dispose()


def shoot(browser: Any, server: Server, world: dict[str, Any], out: Path) -> list[Path]:
    shots: list[Path] = []
    pid = world["patient_id"]
    media = world["media"]

    def page_for(size: str) -> Any:
        body = {"login": LOGIN, "password": PASSWORD, "device_name": f"{size} screenshot", "takeover": True}
        token = httpx.post(f"{server.url}/api/v1/sessions", json=body).json()["token"]
        w, h = SIZES[size]
        context = browser.new_context(viewport={"width": w, "height": h}, has_touch=size != "pc",
                                      is_mobile=size == "phone", device_scale_factor=1)
        context.add_cookies([{"name": "cs_session", "value": token, "url": server.url, "httpOnly": True}])
        page = context.new_page()
        page.set_default_timeout(20_000)
        return page

    def save(page: Any, name: str) -> None:
        page.evaluate("() => document.activeElement?.blur()")  # no focus ring in the pictures
        page.wait_for_timeout(400)
        path = out / f"{name}.png"
        page.screenshot(path=path)
        shots.append(path)

    def settle_tiles(page: Any) -> None:
        page.wait_for_function("() => document.querySelector('#timeline')?.dataset.loaded === '1'")
        page.wait_for_function("() => [...document.querySelectorAll('.tile img')].slice(0, 12)"
                               ".every((i) => i.complete && i.naturalWidth > 0)")

    def paused_at(page: Any, scope: str, seconds: float) -> None:
        page.wait_for_function(f"() => {{ const v = [...document.querySelectorAll('{scope} video')]; "
                               "return v.length && v.every((x) => x.readyState >= 1); }")
        page.evaluate("""([scope, s]) => { const el = document.querySelector(scope + ' input.seek');
            el.value = String(s); el.dispatchEvent(new Event('input', { bubbles: true })); }""", [scope, seconds])
        page.wait_for_function(f"() => [...document.querySelectorAll('{scope} video')]"
                               ".every((v) => !v.seeking && v.readyState >= 2)")

    # PC: the timeline next to the search, the player with a drawing, before/after compare.
    page = page_for("pc")
    page.goto(f"{server.url}/p/{pid}")
    page.fill("#patient-search", "やまだ")
    page.wait_for_selector("#patient-results[data-count='2']")
    settle_tiles(page)
    save(page, "pc-timeline")
    page.goto(f"{server.url}/p/{pid}?m={media['before.mp4']}")
    paused_at(page, "#viewer", 2.0001)
    save(page, "pc-player-drawing")
    page.goto(f"{server.url}/p/{pid}?compare={media['before.mp4']},{media['after.mp4']}")
    paused_at(page, "#compare", 3.0)
    save(page, "pc-compare")
    # A contract admin: viewer accounts and stations; the merge flags relays raised during an outage.
    page.goto(f"{server.url}/")
    page.click("#admin-open")
    page.wait_for_selector("#admin-accounts[data-loaded='1']")
    save(page, "pc-admin-accounts")
    page.click("#admin-tab-stations")
    page.wait_for_selector("#admin-stations[data-loaded='1']")
    save(page, "pc-admin-stations")
    page.click("#admin-close")
    page.click("#merge-open")
    page.wait_for_selector("#merge-list .merge-pair")
    save(page, "pc-merge-flags")
    page.context.close()

    # Tablet: timeline, a photo with its drawing, drawing tools, the import panel.
    page = page_for("tablet")
    page.goto(f"{server.url}/p/{pid}")
    settle_tiles(page)
    save(page, "tablet-timeline")
    page.goto(f"{server.url}/p/{pid}?m={media['photo-1.jpg']}")
    page.wait_for_function("() => document.querySelector('#viewer .stage')?.dataset.layersShown === '1'")
    page.click("#draw-button")
    save(page, "tablet-photo-drawing")
    page.keyboard.press("Escape")
    page.keyboard.press("Escape")
    page.wait_for_selector("#viewer", state="detached")
    # Imports: one photo done, a clip part-way (its later chunks held back), a HEIC waiting its turn.
    page.evaluate("localStorage.setItem('chairside.uploadChunkBytes', String(256 * 1024))")
    held: list[Any] = []
    patches = 0

    def hold_later_chunks(route: Any) -> None:
        nonlocal patches
        if route.request.method == "PATCH":
            patches += 1
            if patches > 6:
                held.append(route)
                return
        route.continue_()

    page.route("**/api/v1/uploads/**", hold_later_chunks)
    page.click("#import-button")
    page.set_input_files("#file-input", [str(world["files"][n]) for n in ("IMG_2041.JPG", "VID_0007.MP4")])
    page.wait_for_function("() => document.querySelector('.q-item[data-state=done]')")
    page.set_input_files("#file-input", str(world["files"]["IMG_2042.HEIC"]))
    page.wait_for_timeout(600)
    save(page, "tablet-import")
    for route in held:
        route.abort()
    page.context.close()

    # Phone: search, timeline with the bottom navigation, player.
    page = page_for("phone")
    page.goto(f"{server.url}/")
    page.fill("#patient-search", "ﾔﾏﾀﾞ")
    page.wait_for_selector("#patient-results[data-count='2']")
    save(page, "phone-search")
    page.goto(f"{server.url}/p/{pid}")
    settle_tiles(page)
    save(page, "phone-timeline")
    page.goto(f"{server.url}/p/{pid}?m={media['before.mp4']}")
    paused_at(page, "#viewer", 2.0001)
    save(page, "phone-player")
    page.context.close()

    # The one-device rule, as a second device sees it.
    w, h = SIZES["phone"]
    context = browser.new_context(viewport={"width": w, "height": h}, has_touch=True, is_mobile=True)
    page = context.new_page()
    page.goto(f"{server.url}/")
    page.fill("#login", LOGIN)
    page.fill("#password", PASSWORD)
    page.fill("#device", "診療室 iPhone")
    page.click("form.auth-form button[type=submit]")
    page.wait_for_selector("#takeover")
    save(page, "phone-in-use")
    context.close()
    return shots


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    args.out.mkdir(parents=True, exist_ok=True)
    with workdir("screenshots") as wd:
        data = wd / "data"
        world = seed(data)
        with Server(data) as server, sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            try:
                for path in shoot(browser, server, world, args.out):
                    print(f"wrote {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")
            finally:
                browser.close()
        shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    main()
