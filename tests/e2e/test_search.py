"""Finding a patient by kana, kanji or chart number, and opening their timeline."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.e2e.conftest import World


def _names(page: Any) -> list[str]:
    return [n.strip() for n in page.locator("#patient-results .name").all_text_contents()]


@pytest.mark.parametrize("query", ["やまだ", "ﾔﾏﾀﾞ", "山田", "0012"])
def test_search_by_kana_kanji_or_chart_number(open_page: Callable[..., Any], world: World, query: str) -> None:
    page = open_page("/")
    page.fill("#patient-search", query)
    page.wait_for_selector("#results-title:has-text('検索結果')")
    page.wait_for_function("() => document.querySelector('#patient-results').dataset.count === '2'")
    assert sorted(_names(page)) == ["山田 太郎", "山田 花子"]


def test_opening_a_patient_shows_the_timeline_and_then_appears_in_recent_patients(
    open_page: Callable[..., Any], world: World
) -> None:
    page = open_page("/")
    page.fill("#patient-search", "たろう")
    page.click("#patient-results a:has-text('山田 太郎')")
    page.wait_for_selector("#patient-name:has-text('山田 太郎')")
    assert page.url == world.patient_url()
    page.wait_for_function("() => document.querySelector('#timeline').dataset.loaded === '1'")
    assert page.locator(".tile").count() == 3
    # The first eight thumbnails load at once (the first screenful); any after them wait until scrolled near.
    assert page.locator(".tile img[loading=eager]").count() == 3
    page.click("#filter-kind-video" if page.locator("#filter-kind-video").count() else ".seg-btn[data-kind=video]")
    assert page.locator(".tile").count() == 2
    page.click(".seg-btn[data-kind=image]")
    assert page.locator(".tile").count() == 1
    # A deep link opens the same page; the patient is now among the recent ones.
    page.goto(world.url + "/")
    page.wait_for_selector("#results-title:has-text('最近の患者')")
    assert _names(page)[0] == "山田 太郎"
