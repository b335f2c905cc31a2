"""Chart numbers match without their leading zeros: reception says "1001" for the card printed 01001."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from chairside.context import Context
from chairside.domain.kana import search_key
from chairside.patients.search import chart_variants, find_patients
from tests.factories import Tenant, make_patient


def _charts(ctx: Context, tenant: Tenant, query: str) -> list[str]:
    scope = SimpleNamespace(contract_id=tenant.contract_id, clinic_ids=frozenset(tenant.clinic_ids))
    with ctx.db.read() as s:
        return [p.chart_no for p in find_patients(s, scope, search_key(query), 50)]


def test_digits_find_the_chart_with_leading_zeros_and_nothing_else(ctx: Context, tenant: Tenant) -> None:
    make_patient(ctx, tenant.contract_id, tenant.clinic_ids[0], "01001", "山田 太郎", "ヤマダ タロウ")
    make_patient(ctx, tenant.contract_id, tenant.clinic_ids[0], "00010010", "佐藤 一郎", "サトウ イチロウ")
    make_patient(ctx, tenant.contract_id, tenant.clinic_ids[1], "1001", "鈴木 花子", "スズキ ハナコ")
    make_patient(ctx, tenant.contract_id, tenant.clinic_ids[1], "21001", "田中 陽子", "タナカ ヨウコ")
    assert sorted(_charts(ctx, tenant, "1001")) == ["00010010", "01001", "1001"]  # 21001 does not start so
    assert _charts(ctx, tenant, "01001") == ["01001"]  # typed with its zero: exactly as before
    assert sorted(_charts(ctx, tenant, "１００１")) == ["00010010", "01001", "1001"]  # full-width digits fold
    assert _charts(ctx, tenant, "2") == ["21001"]


def test_another_contracts_padded_chart_stays_invisible(ctx: Context, tenant: Tenant, other_tenant: Tenant) -> None:
    make_patient(ctx, other_tenant.contract_id, other_tenant.clinic_ids[0], "01001")
    assert _charts(ctx, tenant, "1001") == []


@pytest.mark.parametrize(("key", "expected"), [("0", ["0"]), ("やまだ", ["やまだ"]), ("1a", ["1a"])])
def test_only_digits_without_a_leading_zero_are_padded(key: str, expected: list[str]) -> None:
    assert chart_variants(key) == expected
    assert chart_variants("7")[:3] == ["7", "07", "007"]
