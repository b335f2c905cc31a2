"""The viewer's page and static files: served without a build step, Japanese first, nothing from other hosts."""

from __future__ import annotations

import re
import tomllib
import uuid
from pathlib import Path

import httpx
import pytest

from chairside.web.routes import HERE, STATIC
from tests.conftest import LiveServer

ROOT = Path(__file__).resolve().parents[2]
JS = sorted((STATIC / "js").rglob("*.js"))  # the message catalogues are in js/messages/


@pytest.mark.parametrize("path", ["/", f"/p/{uuid.uuid4()}", "/p/not-an-id"])
def test_the_page_is_served_at_root_and_deep_links_without_signing_in(server: LiveServer, path: str) -> None:
    r = httpx.get(server.url + path)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert '<html lang="ja">' in r.text
    csp = r.headers["content-security-policy"]
    assert "default-src 'self'" in csp and "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert r.headers["x-content-type-options"] == "nosniff"
    for js in JS:
        assert f'href="/static/{js.relative_to(STATIC).as_posix()}"' in r.text  # preloaded: modules load in parallel


def test_static_files_are_served_with_the_right_types(server: LiveServer) -> None:
    js = httpx.get(f"{server.url}/static/js/app.js")
    assert js.status_code == 200 and "javascript" in js.headers["content-type"]
    assert js.headers["cache-control"] == "no-cache" and js.headers["etag"]
    nested = httpx.get(f"{server.url}/static/js/messages/ja.js")  # a module in a subfolder
    assert nested.status_code == 200 and "javascript" in nested.headers["content-type"]
    css = httpx.get(f"{server.url}/static/css/app.css")
    assert css.headers["content-type"].startswith("text/css")
    missing = httpx.get(f"{server.url}/static/js/nothing.js")
    assert missing.status_code == 404 and missing.headers["content-type"] == "application/problem+json"


def test_nothing_is_loaded_from_another_host() -> None:
    pattern = re.compile(r"(https?:)?//[a-z0-9.-]+\.[a-z]{2,}", re.I)
    for path in [*STATIC.rglob("*"), *(HERE / "templates").rglob("*")]:
        if path.is_file():
            text = path.read_text()
            hosts = [m.group(0) for m in pattern.finditer(text) if m.group(0) != "http://www.w3.org"]
            assert hosts == [], (path.name, hosts)
            assert "@import" not in text and "url(http" not in text


def test_every_module_import_resolves() -> None:
    for js in JS:
        for target in re.findall(r"^import .* from '(\./[^']+)';$", js.read_text(), re.M):
            assert (js.parent / target).is_file(), (js.name, target)


def test_every_ui_string_is_in_both_languages() -> None:
    messages = STATIC / "js" / "messages"
    ja_block = (messages / "ja.js").read_text().split("export default {", 1)[1].split("\n};", 1)[0]
    en_block = (messages / "en.js").read_text().split("export default {", 1)[1].split("\n};", 1)[0]
    key = re.compile(r"^\s+'([\w.-]+)':", re.M)
    ja, en = set(key.findall(ja_block)), set(key.findall(en_block))
    assert ja == en, ja ^ en
    used = set()
    for js in JS:
        used |= set(re.findall(r"\bt\('([\w.-]+)'", js.read_text()))
    assert used - ja == set()


def test_package_data_ships_every_static_file() -> None:
    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["chairside"]
    package = ROOT / "src" / "chairside"
    shipped = {p for pattern in patterns for p in package.glob(pattern) if p.is_file()}
    wanted = {p for p in (package / "web").rglob("*")
              if p.is_file() and p.suffix not in (".py", ".pyc") and "__pycache__" not in p.parts}
    assert wanted - shipped == set()
