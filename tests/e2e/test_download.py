"""Downloading a selection as a zip: stored entries, plain names, a manifest that checks out."""

from __future__ import annotations

import hashlib
import json
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.e2e.conftest import World


def test_download_a_selection_as_a_zip_with_a_manifest(
    open_page: Callable[..., Any], world: World, e2e_media: Path, tmp_path: Path
) -> None:
    page = open_page(world.patient_url().removeprefix(world.url))
    page.wait_for_selector(".tile")
    page.click("#select-toggle")
    for name in ("before.mp4", "photo.jpg"):
        page.click(f".tile[data-id='{world.media[name]['id']}'] .tile-btn")
    with page.expect_download() as info:
        page.click("#download-button")
    download = info.value
    assert download.suggested_filename.endswith("_山田太郎_00123.zip")
    path = tmp_path / "export.zip"
    download.save_as(path)
    with zipfile.ZipFile(path) as z:
        assert z.testzip() is None
        names = z.namelist()
        root = names[0].split("/")[0]
        assert root + ".zip" == download.suggested_filename
        assert all(i.compress_type == zipfile.ZIP_STORED for i in z.infolist())
        manifest = json.loads(z.read(f"{root}/manifest.json"))
        assert manifest["count"] == 2
        by_id = {item["media_id"]: item for item in manifest["items"]}
        for name in ("before.mp4", "photo.jpg"):
            item = by_id[world.media[name]["id"]]
            data = z.read(f"{root}/{item['file']}")
            assert hashlib.sha256(data).hexdigest() == item["sha256"] == world.media[name]["sha256"]
            assert data == (e2e_media / name).read_bytes()
            assert item["patient"]["chart_no"] == "00123" and item["size"] == len(data)
        assert z.read(f"{root}/manifest.csv").decode("utf-8-sig").startswith("file,patient_chart_no")
