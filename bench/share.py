"""A share link opened on a phone-sized browser: navigation → first picture shown, on loopback.

Measured in Debian's Chromium (headless) driven by Playwright, against a real `chairside cloud serve` on
loopback; each run is a fresh browser context (cold HTTP cache, no cookie: the patient's phone) at
390×844, device pixel ratio 3, touch. The link shows a 1920×1440 JPEG photo and a 10 s 1080p clip; the
figure is the Largest Contentful Paint of the first photo (ms from navigation start), which includes the
token check, the audit entry of the view and the photo's bytes. Reference, same run, same origin: a bare
page with the same `<img>` (served by the test harness, so without the token check and the audit write),
timed the same way. A 4032×3024 HEIC first photo is measured too: its display JPEG is made right after the
link is made (`sharing.links.prepare`, a background task of `POST /api/v1/share-links`), timed separately.

    .venv/bin/python bench/share.py [--runs 9]
    .venv/bin/python bench/share.py --screenshots docs/screenshots   # the share sheet and the patient's page
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import shutil
import time
import uuid
from pathlib import Path
from typing import Any

from _common import Server, fmt_runs, header, median, operator, seed, workdir

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
PHONE = {"viewport": {"width": 390, "height": 844}, "device_scale_factor": 3, "is_mobile": True, "has_touch": True}
TARGET_MS = 1000

FIRST_PAINT = """() => new Promise((resolve) => {
  new PerformanceObserver((list) => {
    const img = document.querySelector('img');
    for (const entry of list.getEntries()) {
      if (entry.element === img || (entry.url && img && entry.url === img.currentSrc)) {
        resolve(entry.renderTime || entry.loadTime);
      }
    }
  }).observe({ type: 'largest-contentful-paint', buffered: true });
})"""

REFERENCE = """<!doctype html><html><head><meta name="viewport" content="width=device-width, initial-scale=1"></head>
<body style="margin:0"><img src="{src}" style="display:block;width:100%;height:auto" alt=""></body></html>"""


def populate(data_dir: Path, first: str) -> tuple[str, str]:
    """A patient with a photo (`first`: jpeg or heic) and a 1080p clip, shared; answers (token, photo id)."""
    from chairside.context import build_context
    from chairside.media.ingest import IngestRequest, file_sha256, ingest
    from chairside.mediafile import generate
    from chairside.settings import Settings
    from chairside.sharing import links
    s = seed(data_dir)
    ctx = build_context(Settings.load(environ={}, data_dir=data_dir))
    try:
        start = dt.datetime(2026, 11, 20, 1, 0, tzinfo=dt.UTC)
        photo = data_dir / ("first.heic" if first == "heic" else "first.jpg")
        if first == "heic":
            generate.make_heic(photo, width=4032, height=3024)
        else:
            generate.make_jpeg(photo, width=1920, height=1440, seed=5, quality=90)
        clip = data_dir / "clip.mp4"
        generate.make_video(clip, seconds=10.0, width=1920, height=1080, fps=30, bitrate=8_000_000, label="share")
        ids = []
        for n, path in enumerate((photo, clip)):
            media_id = uuid.uuid4()
            ingest(ctx.db, ctx.blobs, IngestRequest(
                path=path, sha256=file_sha256(path), size=path.stat().st_size, media_id=media_id,
                contract_id=s.contract_id, clinic_id=s.clinic_id, patient_id=s.patient_id, filename=path.name,
                captured_at=start + dt.timedelta(minutes=n), source="migration"))
            ids.append(media_id)
        link, token = links.create(ctx, operator(s.contract_id), ids, 3600)
        t = time.perf_counter()
        links.prepare(ctx, link.id)  # as POST /api/v1/share-links does right after answering
        print(f"   [{first}] display copies made after the link: {time.perf_counter() - t:.1f} s")
    finally:
        ctx.db.dispose()
    return token, str(ids[0])


def measure(browser: Any, server: Server, token: str, photo_id: str, runs: int) -> tuple[list[float], list[float]]:
    shared, reference = [], []
    src = f"/api/v1/shared/{token}/media/{photo_id}/content"
    for _ in range(runs):
        for which in ("share", "reference"):  # alternate, so drift hits both alike
            context = browser.new_context(**PHONE)
            page = context.new_page()
            if which == "share":
                page.goto(f"{server.url}/s/{token}")
                shared.append(float(page.evaluate(FIRST_PAINT)))
            else:
                page.route(f"{server.url}/bench-reference", lambda route: route.fulfill(
                    status=200, content_type="text/html", body=REFERENCE.format(src=src)))
                page.goto(f"{server.url}/bench-reference")
                reference.append(float(page.evaluate(FIRST_PAINT)))
            context.close()
    return shared, reference


def screenshots(out: Path) -> None:
    """The share sheet in the viewer (PC) with its QR code, and the patient's page on a phone."""
    import httpx
    from playwright.sync_api import sync_playwright

    from chairside.auth.accounts import create_account
    from chairside.context import build_context
    from chairside.settings import Settings
    out.mkdir(parents=True, exist_ok=True)
    with workdir("share-shots") as wd:
        data = wd / "data"
        _, photo_id = populate(data, "jpeg")
        ctx = build_context(Settings.load(environ={}, data_dir=data))
        try:
            with ctx.db.read() as s:
                from chairside.db.models import Media
                item = s.get(Media, uuid.UUID(photo_id))
                assert item is not None
                patient_id, contract_id = item.patient_id, item.contract_id
            create_account(ctx, contract_id, "sakura", "demo-password-0123")
        finally:
            ctx.db.dispose()
        with Server(data) as server, sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=[*ARGS, "--font-render-hinting=none"])
            body = {"login": "sakura", "password": "demo-password-0123", "device_name": "screenshot", "takeover": True}
            token = httpx.post(f"{server.url}/api/v1/sessions", json=body, timeout=60).json()["token"]
            pc = browser.new_context(viewport={"width": 1440, "height": 900})
            pc.add_cookies([{"name": "cs_session", "value": token, "url": server.url, "httpOnly": True}])
            page = pc.new_page()
            page.goto(f"{server.url}/p/{patient_id}")
            page.wait_for_selector(".tile")
            page.click("#select-toggle")
            page.click(".tile .tile-btn >> nth=0")
            page.click(".tile .tile-btn >> nth=1")
            page.click("#share-button")
            page.click("#share-create")
            page.wait_for_function("() => document.querySelector('#share-qr')?.naturalWidth > 0")
            url = page.input_value("#share-url")
            page.evaluate("() => document.activeElement?.blur()")
            page.screenshot(path=out / "pc-share-link.png")
            phone = browser.new_context(**PHONE)
            shown = phone.new_page()
            shown.goto(url)
            shown.evaluate(FIRST_PAINT)
            shown.wait_for_timeout(400)
            shown.screenshot(path=out / "phone-share-link.png")
            browser.close()
    print(f"wrote {out / 'pc-share-link.png'} and {out / 'phone-share-link.png'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=9)
    parser.add_argument("--screenshots", type=Path, default=None, help="write the screenshots there instead")
    args = parser.parse_args()
    if args.screenshots:
        screenshots(args.screenshots)
        return
    from playwright.sync_api import sync_playwright

    header("share link: first picture on a phone-sized browser")
    results: dict[str, float] = {}
    for first in ("jpeg", "heic"):
        with workdir("share") as wd:
            data = wd / "data"
            t = time.perf_counter()
            token, photo_id = populate(data, first)
            print(f"   [{first}] seeded in {time.perf_counter() - t:.1f} s")
            with Server(data) as server, sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
                shared, reference = measure(browser, server, token, photo_id, args.runs)
                browser.close()
            print(f"   [{first}] first picture shown, ms from navigation, median of {args.runs} cold phones:")
            print(f"     share link page               {median(shared):7.0f}  {fmt_runs(shared)}")
            print(f"     reference: bare <img> page    {median(reference):7.0f}  {fmt_runs(reference)}")
            print(f"     ratio share / reference: {median(shared) / median(reference):.2f}")
            verdict = "meets" if median(shared) <= TARGET_MS else "MISSES"
            print(f"     target ≤ {TARGET_MS} ms: {verdict}")
            results[f"{first}_share_first_image_ms"] = median(shared)
            results[f"{first}_reference_first_image_ms"] = median(reference)
        shutil.rmtree(data, ignore_errors=True)
    print("   " + json.dumps(results))


if __name__ == "__main__":
    main()
