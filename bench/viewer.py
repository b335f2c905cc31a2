"""The browser viewer: a 500-item timeline's first paint, and play → first frame of a 1080p clip.

Measured in Debian's Chromium (headless, software decoding) driven by Playwright, against a real
`chairside cloud serve` on loopback; each run is a fresh browser context (cold HTTP cache).

* Timeline: `/p/{patient}` of a patient with 500 photos. The page marks `cs:timeline-dom` when the
  first thumbnails are in the DOM and `cs:first-thumbnail` when the first one has loaded
  (Performance API, ms from navigation start). Reference, same run: a static HTML page with the
  same 500 `<img loading="lazy">` (served from the same origin, so the same cookie and server),
  timed to its first thumbnail's load.
* Play: `/p/{patient}?m={clip}` with a 10 s 1080p 30 fps 15 Mbit/s H.264 clip, metadata loaded
  (`preload="metadata"`); pressing play marks `cs:play`, and `requestVideoFrameCallback` marks
  the first presented frame. Reference, same run: a bare `<video preload="metadata">` page whose
  `play()` is timed the same way.

    .venv/bin/python bench/viewer.py [--items 500] [--runs 7]
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

import httpx

from _common import WORK, Server, fmt_runs, header, median, seed, workdir

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
PASSWORD = "bench-password-0123"
TIMELINE_TARGET_MS = 1000
PLAY_TARGET_MS = 300


def clip_1080p() -> Path:
    path = WORK / "clip-1080p-10s.mp4"
    if not path.exists():
        from chairside.mediafile import generate
        WORK.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name("clip-1080p-10s.making.mp4")
        generate.make_video(tmp, seconds=10.0, width=1920, height=1080, fps=30, bitrate=15_000_000, label="1080p")
        tmp.rename(path)
    return path


def populate(data_dir: Path, items: int) -> tuple[str, str, str]:
    """The seeded patient gets `items` photos (distinct JPEGs, a day apart in groups) and one 1080p clip;
    a viewer account is made. Answers (patient id, clip id, login)."""
    from chairside.auth.accounts import create_account
    from chairside.context import build_context
    from chairside.media.ingest import IngestRequest, file_sha256, ingest
    from chairside.mediafile import generate
    from chairside.settings import Settings
    s = seed(data_dir)
    ctx = build_context(Settings.load(environ={}, data_dir=data_dir))
    try:
        start = dt.datetime(2026, 11, 20, 1, 0, tzinfo=dt.UTC)
        t = time.perf_counter()
        for i in range(items):
            path = data_dir / f"p{i}.jpg"
            generate.make_jpeg(path, width=640, height=480, seed=i, quality=85)
            ingest(ctx.db, ctx.blobs, IngestRequest(
                path=path, sha256=file_sha256(path), size=path.stat().st_size, media_id=uuid.uuid4(),
                contract_id=s.contract_id, clinic_id=s.clinic_id, patient_id=s.patient_id, filename=path.name,
                captured_at=start - dt.timedelta(days=i // 6, minutes=i % 6), source="migration"))
            path.unlink(missing_ok=True)
        print(f"   seeded {items} photos in {time.perf_counter() - t:.1f} s")
        clip = data_dir / "clip.mp4"
        shutil.copyfile(clip_1080p(), clip)  # ingest moves the file it is given into the blob store
        clip_id = uuid.uuid4()
        ingest(ctx.db, ctx.blobs, IngestRequest(
            path=clip, sha256=file_sha256(clip), size=clip.stat().st_size, media_id=clip_id,
            contract_id=s.contract_id, clinic_id=s.clinic_id, patient_id=s.patient_id, filename=clip.name,
            captured_at=start + dt.timedelta(hours=1), source="migration"))
        create_account(ctx, s.contract_id, "bench", PASSWORD)
    finally:
        ctx.db.dispose()
    return str(s.patient_id), str(clip_id), "bench"


def reference_timeline(ids: list[str]) -> str:
    first = ('<img loading="lazy" width="160" height="120" alt="" src="/api/v1/media/{}/thumbnail" '
             'onload="performance.getEntriesByName(\'ref:first-thumbnail\').length || '
             'performance.mark(\'ref:first-thumbnail\')">')
    rest = '<img loading="lazy" width="160" height="120" alt="" src="/api/v1/media/{}/thumbnail">'
    imgs = [first.format(ids[0]), *(rest.format(i) for i in ids[1:])]
    return "<!doctype html><html><body>" + "".join(imgs) + "</body></html>"


REFERENCE_VIDEO = """<!doctype html><html><body style="margin:0;background:#000">
<video id="v" preload="metadata" playsinline src="/api/v1/media/{id}/content" style="width:100vw;height:100vh"></video>
</body></html>"""

PLAY_REFERENCE = """() => new Promise((resolve) => {
  const v = document.getElementById('v');
  const t0 = performance.now();
  v.requestVideoFrameCallback(() => resolve(performance.now() - t0));
  v.play();
})"""


def mark(page: Any, name: str) -> float:
    value: float = page.evaluate(f"() => performance.getEntriesByName('{name}')[0]?.startTime ?? -1")
    return value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=500)
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    header(f"viewer: timeline of {args.items} items, play → first frame of 1080p")
    with workdir("viewer") as wd:
        data = wd / "data"
        patient_id, clip_id, login = populate(data, args.items)
        with Server(data) as server, sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            print(f"   {browser.version}")

            def sign_in() -> str:
                body = {"login": login, "password": PASSWORD, "device_name": "bench", "takeover": True}
                token: str = httpx.post(f"{server.url}/api/v1/sessions", json=body, timeout=60).json()["token"]
                return token

            def fresh() -> Any:
                token = sign_in()
                context = browser.new_context(viewport={"width": 1440, "height": 900})
                context.add_cookies([{"name": "cs_session", "value": token, "url": server.url, "httpOnly": True}])
                return context

            token = sign_in()
            listing = httpx.get(f"{server.url}/api/v1/patients/{patient_id}/media", params={"limit": 1000},
                                headers={"Authorization": f"Bearer {token}"}, timeout=60).json()["items"]
            photo_ids = [m["id"] for m in listing if m["kind"] == "image"]
            ref_html = reference_timeline(photo_ids)

            dom, thumb, complete, ref = [], [], [], []
            for _ in range(args.runs):
                for which in ("viewer", "reference"):  # alternate, so drift hits both alike
                    context = fresh()
                    page = context.new_page()
                    if which == "viewer":
                        page.goto(f"{server.url}/p/{patient_id}")
                        page.wait_for_function("() => performance.getEntriesByName('cs:first-thumbnail').length"
                                               " && performance.getEntriesByName('cs:timeline-complete').length")
                        dom.append(mark(page, "cs:timeline-dom"))
                        thumb.append(mark(page, "cs:first-thumbnail"))
                        complete.append(mark(page, "cs:timeline-complete"))
                        tiles = page.locator(".tile").count()
                        assert tiles == args.items + 1, tiles
                    else:
                        page.route(f"{server.url}/bench-reference", lambda route: route.fulfill(
                            status=200, content_type="text/html", body=ref_html))
                        page.goto(f"{server.url}/bench-reference")
                        page.wait_for_function("() => performance.getEntriesByName('ref:first-thumbnail').length")
                        ref.append(mark(page, "ref:first-thumbnail"))
                    context.close()

            play, play_ref = [], []
            for _ in range(args.runs):
                for which in ("viewer", "reference"):
                    context = fresh()
                    page = context.new_page()
                    if which == "viewer":
                        page.goto(f"{server.url}/p/{patient_id}?m={clip_id}")
                        page.wait_for_function("() => document.querySelector('#viewer video')?.readyState >= 1")
                        page.wait_for_timeout(300)  # settle: the press comes after the page is idle
                        page.click("#viewer .play")
                        page.wait_for_function("() => document.querySelector('#viewer')?.dataset.firstFrameMs")
                        play.append(float(page.get_attribute("#viewer", "data-first-frame-ms") or "nan"))
                    else:
                        page.route(f"{server.url}/bench-video", lambda route: route.fulfill(
                            status=200, content_type="text/html", body=REFERENCE_VIDEO.format(id=clip_id)))
                        page.goto(f"{server.url}/bench-video")
                        page.wait_for_function("() => document.getElementById('v').readyState >= 1")
                        page.wait_for_timeout(300)
                        play_ref.append(float(page.evaluate(PLAY_REFERENCE)))
                    context.close()
            browser.close()

    results = {
        "timeline_dom_ms": median(dom), "timeline_first_thumbnail_ms": median(thumb),
        "timeline_complete_ms": median(complete), "reference_first_thumbnail_ms": median(ref),
        "play_to_first_frame_ms": median(play), "reference_play_to_first_frame_ms": median(play_ref),
    }
    print(f"   timeline ({args.items} items), ms from navigation start, median of {args.runs} cold loads:")
    print(f"     first thumbnails in the DOM   {median(dom):7.0f}  {fmt_runs(dom)}")
    print(f"     first thumbnail loaded        {median(thumb):7.0f}  {fmt_runs(thumb)}")
    print(f"     all {args.items} tiles in the DOM      {median(complete):7.0f}  {fmt_runs(complete)}")
    print(f"     reference: static page, first thumbnail loaded {median(ref):.0f}  {fmt_runs(ref)}")
    print(f"     ratio viewer / reference (first thumbnail): {median(thumb) / median(ref):.2f}")
    verdict = "meets" if median(thumb) <= TIMELINE_TARGET_MS else "MISSES"
    print(f"     target ≤ {TIMELINE_TARGET_MS} ms: {verdict}")
    print(f"   play → first frame, 1080p, ms, median of {args.runs}:")
    print(f"     viewer                        {median(play):7.1f}  {fmt_runs(play, '.1f')}")
    print(f"     reference: bare <video>       {median(play_ref):7.1f}  {fmt_runs(play_ref, '.1f')}")
    print(f"     ratio viewer / reference: {median(play) / median(play_ref):.2f}")
    verdict = "meets" if median(play) <= PLAY_TARGET_MS else "MISSES"
    print(f"     target ≤ {PLAY_TARGET_MS} ms: {verdict}")
    print("   " + json.dumps(results))


if __name__ == "__main__":
    main()
