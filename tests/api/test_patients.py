from __future__ import annotations

import uuid

import httpx
import pytest
from sqlalchemy import text

from chairside.api.context import Context
from chairside.client import ChairsideError, Client
from tests.conftest import LiveServer, Tenant


def _names(items: list[dict[str, object]]) -> set[object]:
    return {p["name"] for p in items}


def test_create_patient_answers_201_with_its_id(server: LiveServer, tenant: Tenant) -> None:
    r = httpx.post(
        f"{server.url}/api/v1/patients",
        headers={"Authorization": f"Bearer {tenant.token}"},
        json={"clinic_id": str(tenant.clinic_ids[0]), "chart_no": "A-1", "name": "佐藤 花子",
              "name_kana": "サトウ ハナコ", "birth_date": "1990-01-02", "sex": "female"},
    )
    assert r.status_code == 201, r.text
    body = r.json()
    uuid.UUID(body["id"])
    assert body["name_kana"] == "サトウ ハナコ"
    assert body["birth_date"] == "1990-01-02"


def test_chart_number_is_unique_per_clinic_not_per_contract(api: Client, tenant: Tenant) -> None:
    api.create_patient(tenant.clinic_ids[0], "100", "山田 太郎", "ヤマダ タロウ")
    with pytest.raises(ChairsideError) as e:
        api.create_patient(tenant.clinic_ids[0], "100", "山本 次郎", "ヤマモト ジロウ")
    assert e.value.status == 409
    assert "100" in e.value.detail
    api.create_patient(tenant.clinic_ids[1], "100", "山本 次郎", "ヤマモト ジロウ")  # another branch: fine


@pytest.mark.parametrize("query", ["やまだ", "ヤマダ", "ﾔﾏﾀﾞ", "ＹＡＭＡ", "山田", "山田 太", "たろう", "ﾀﾛｳ", "00042"])
def test_search_finds_by_kana_in_any_form_kanji_and_chart_number(api: Client, tenant: Tenant, query: str) -> None:
    api.create_patient(tenant.clinic_ids[0], "00042", "山田 太郎", "ヤマダ タロウ")
    api.create_patient(tenant.clinic_ids[0], "00043", "佐藤 一郎", "サトウ イチロウ")
    if query == "ＹＡＭＡ":  # full-width Latin folds too; no romaji term exists, so nothing matches
        assert api.search_patients(query) == []
        return
    assert _names(api.search_patients(query)) == {"山田 太郎"}


def test_search_never_returns_another_contracts_patients(
    server: LiveServer, api: Client, tenant: Tenant, other_tenant: Tenant
) -> None:
    api.create_patient(tenant.clinic_ids[0], "1", "山田 太郎", "ヤマダ タロウ")
    with Client(server.url, other_tenant.token) as other:
        other.create_patient(other_tenant.clinic_ids[0], "1", "山田 花子", "ヤマダ ハナコ")
        assert _names(other.search_patients("やまだ")) == {"山田 花子"}
    assert _names(api.search_patients("やまだ")) == {"山田 太郎"}


def test_patient_of_another_contract_answers_404_like_a_missing_one(
    server: LiveServer, api: Client, tenant: Tenant, other_tenant: Tenant
) -> None:
    mine = api.create_patient(tenant.clinic_ids[0], "9", "森 優子", "モリ ユウコ")
    with Client(server.url, other_tenant.token) as other:
        with pytest.raises(ChairsideError) as foreign:
            other.get_patient(mine["id"])
        with pytest.raises(ChairsideError) as missing:
            other.get_patient(uuid.uuid4())
    assert foreign.value.status == missing.value.status == 404
    strip = {"instance"}
    assert {k: v for k, v in foreign.value.problem.items() if k not in strip} == {
        k: v for k, v in missing.value.problem.items() if k not in strip
    }


def test_creating_a_patient_in_another_contracts_clinic_is_refused(
    api: Client, other_tenant: Tenant
) -> None:
    with pytest.raises(ChairsideError) as e:
        api.create_patient(other_tenant.clinic_ids[0], "1", "林 大樹", "ハヤシ ダイキ")
    assert e.value.status == 422
    assert "clinic" in e.value.detail


def test_invalid_patient_body_is_a_problem_naming_the_fields(server: LiveServer, tenant: Tenant) -> None:
    r = httpx.post(f"{server.url}/api/v1/patients", headers={"Authorization": f"Bearer {tenant.token}"},
                   json={"clinic_id": "nope", "chart_no": "", "name": "x", "name_kana": "x", "sex": "robot"})
    assert r.status_code == 422
    assert r.headers["content-type"] == "application/problem+json"
    fields = {e["field"] for e in r.json()["errors"]}
    assert {"clinic_id", "chart_no", "sex"} <= fields


def test_renaming_a_patient_updates_search(api: Client, tenant: Tenant, server: LiveServer) -> None:
    p = api.create_patient(tenant.clinic_ids[0], "7", "田中 陽子", "タナカ ヨウコ")
    r = httpx.patch(f"{server.url}/api/v1/patients/{p['id']}", headers={"Authorization": f"Bearer {tenant.token}"},
                    json={"name": "鈴木 陽子", "name_kana": "スズキ ヨウコ"})
    assert r.status_code == 200, r.text
    assert api.search_patients("たなか") == []
    assert _names(api.search_patients("すずき")) == {"鈴木 陽子"}


def test_search_is_an_index_range_scan(ctx: Context, api: Client, tenant: Tenant) -> None:
    api.create_patient(tenant.clinic_ids[0], "1", "山田 太郎", "ヤマダ タロウ")
    sql = ("SELECT patient_id FROM patient_search_terms WHERE contract_id = :c "
           "AND term >= :lo AND term < :hi")
    contract = tenant.contract_id.hex if ctx.db.engine.dialect.name == "sqlite" else tenant.contract_id
    params = {"c": contract, "lo": "やまだ", "hi": "やまだ\U0010ffff"}
    with ctx.db.engine.connect() as conn:
        if ctx.db.engine.dialect.name == "sqlite":
            plan = " ".join(str(r[-1]) for r in conn.execute(text("EXPLAIN QUERY PLAN " + sql), params))
        else:
            conn.execute(text("SET enable_seqscan = off"))
            plan = " ".join(str(r[0]) for r in conn.execute(text("EXPLAIN " + sql), params))
    assert "ix_patient_search_terms_contract_id_term" in plan, plan
