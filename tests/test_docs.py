from __future__ import annotations

import re
from pathlib import Path

from chairside.settings import SETTINGS, Settings

ROOT = Path(__file__).resolve().parent.parent


def test_every_setting_is_documented() -> None:
    doc = (ROOT / "docs" / "settings.md").read_text()
    documented = set(re.findall(r"^\| `([a-z_]+)` \| `(CHAIRSIDE_[A-Z_]+)`", doc, re.M))
    assert {(s.name, s.env) for s in SETTINGS} == documented


def test_environment_then_overrides(tmp_path: Path) -> None:
    env = {"CHAIRSIDE_MAX_UPLOAD_BYTES": "123", "CHAIRSIDE_DATA_DIR": str(tmp_path)}
    s = Settings.load(environ=env)
    assert s.max_upload_bytes == 123 and s.data_dir == tmp_path
    assert s.database_url == f"sqlite:///{tmp_path / 'chairside.db'}"
    assert Settings.load(environ=env, max_upload_bytes=7).max_upload_bytes == 7


def test_readme_starts_with_the_two_commands() -> None:
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```(?:sh|bash)?\n(.*?)```", readme, re.S)
    first = blocks[0].strip().splitlines()
    assert first == ["scripts/demo", "scripts/test"]
    for command in first:
        assert (ROOT / command).stat().st_mode & 0o111, command
    ci = (ROOT / ".ci" / "run").read_text()
    assert "scripts/test" in ci
