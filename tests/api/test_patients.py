from __future__ import annotations

import unicodedata
import uuid
from datetime import UTC, datetime
from types import SimpleNamespace

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy import insert, text

from chairside.client import ChairsideError, Client
from chairside.context import Context
from chairside.db import migrate
from chairside.db.engine import make_engine
from chairside.db.models import Patient, PatientSearchTerm
from chairside.domain.kana import fold, search_key, search_terms
from chairside.patients import search as patient_search
from tests.conftest import LiveServer, sign_in
from tests.factories import Tenant, make_account, make_patient


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


# -- search order, breadth and scope (patients/search.py) ---------------------------------------------

KANA = "アイウエオカキクケコサシスセソタチツテトナニヌネノハヒフヘホマミムメモヤユヨラリルレロワ"


def _bulk_patients(ctx: Context, tenant: Tenant, n: int) -> list[tuple[str, uuid.UUID, uuid.UUID]]:
    """n patients straight into the database, all with kana starting サ and chart numbers starting 1.

    Kana order runs against chart-number (and so term) order: the highest chart number has the
    first kana, so a search that kept the first matches in term order (the old LIMIT 1000 inside)
    would miss the first 100 by kana. Names are stored in katakana, hiragana and half-width forms in turn. Answers
    (sort key, id, clinic id) of each, in the order search must give them.

    Not through the service (tests/factories.py): one transaction for all, since one service call each
    (its clock, audit and feed rows, a commit) takes about 20 ms here, some 20 s for 1,100 patients per run.
    These tests read the search rows only, which are made as the service makes them (`index_rows`).
    """
    out = []
    with ctx.db.session() as s:
        patients = []
        for i in range(n):
            rank = n - 1 - i
            kana = f"サ{KANA[rank // len(KANA)]}{KANA[rank % len(KANA)]} タロウ"
            if i % 3 == 1:
                kana = kana.translate({c: c - 0x60 for c in range(0x30A1, 0x30F7)})  # hiragana
            elif i % 3 == 2:
                kana = unicodedata.normalize("NFKC", kana).translate(_HALF)
            patients.append(Patient(contract_id=tenant.contract_id, clinic_id=tenant.clinic_ids[i % 2],
                                    chart_no=f"1{i:04d}", name="佐藤 太郎", name_kana=kana, sex="male"))
        s.add_all(patients)
        s.flush()
        rows = [row for p in patients
                for row in patient_search.index_rows(p.id, p.contract_id, p.chart_no, p.name, p.name_kana)]
        s.execute(insert(PatientSearchTerm), rows)
        out = [(patient_search.sort_key(p.name_kana), p.id, p.clinic_id) for p in patients]
    return sorted(out)


_HALF = {ord(unicodedata.normalize("NFKC", chr(c))): chr(c) for c in range(0xFF71, 0xFF9E)}  # ｱ … ﾝ


@pytest.mark.parametrize("query", ["さ", "ｻ", "1"])
def test_a_broad_prefix_answers_the_first_patients_by_kana_exactly(
    ctx: Context, api: Client, tenant: Tenant, query: str
) -> None:
    # 1,100 matches: more than any inner limit, and the kana-first patients have the last chart numbers.
    expected = _bulk_patients(ctx, tenant, 1100)
    assert [p["id"] for p in api.search_patients(query, limit=20)] == [str(pid) for _, pid, _ in expected[:20]]
    assert [p["id"] for p in api.search_patients(query)] == [str(pid) for _, pid, _ in expected[:50]]
    # Katakana, hiragana and half-width spellings of one name sort together, by the folded kana.
    names = [p["name_kana"] for p in api.search_patients(query, limit=200)]
    assert [fold(n) for n in names] == sorted(fold(n) for n in names)
    assert len({n[0] for n in names}) == 3  # サ, さ and ｻ, interleaved


def test_a_clinic_scoped_account_gets_a_full_page_of_its_own_patients_in_order(
    ctx: Context, server: LiveServer, tenant: Tenant
) -> None:
    expected = _bulk_patients(ctx, tenant, 300)
    mine = [str(pid) for _, pid, clinic in expected if clinic == tenant.clinic_ids[1]]
    viewer = make_account(ctx, tenant, "branch-2", clinic_ids=[tenant.clinic_ids[1]])
    with Client(server.url, sign_in(server, viewer)) as branch:
        assert [p["id"] for p in branch.search_patients("さ", limit=30)] == mine[:30]
        assert [p["id"] for p in branch.search_patients("1", limit=200)] == mine[:150]


def test_a_patient_matching_through_several_terms_is_listed_once(api: Client, tenant: Tenant) -> None:
    api.create_patient(tenant.clinic_ids[0], "1", "山田 山田男", "ヤマダ ヤマダオ")
    api.create_patient(tenant.clinic_ids[0], "2", "山田 花子", "ヤマダ ハナコ")
    assert [p["name"] for p in api.search_patients("やまだ")] == ["山田 花子", "山田 山田男"]
    assert [p["name"] for p in api.search_patients("山田")] == ["山田 花子", "山田 山田男"]


def test_a_query_longer_than_the_stored_prefixes_is_matched_whole(api: Client, tenant: Tenant) -> None:
    long_kana = "ジュゲムジュゲム ゴコウノスリキレ カイジャリスイギョノスイギョウマツ"
    api.create_patient(tenant.clinic_ids[0], "1", "寿限無", long_kana)
    api.create_patient(tenant.clinic_ids[0], "2", "寿限無 二", long_kana.replace("マツ", "マチ"))
    key = search_key(long_kana)
    assert len(key) > patient_search.PREFIX_CAP
    assert _names(api.search_patients(long_kana)) == {"寿限無"}
    assert _names(api.search_patients(long_kana[:-1])) == {"寿限無", "寿限無 二"}
    assert _names(api.search_patients("ｼﾞｭｹﾞﾑｼﾞｭｹﾞﾑｺﾞｺｳﾉｽﾘｷﾚｶｲｼﾞｬﾘｽｲｷﾞｮﾉｽｲｷﾞｮｳﾏﾁ")) == {"寿限無 二"}
    assert api.search_patients(long_kana + "X") == []


def test_search_walks_one_index_in_result_order_without_sorting(ctx: Context, api: Client, tenant: Tenant) -> None:
    api.create_patient(tenant.clinic_ids[0], "1", "山田 太郎", "ヤマダ タロウ")
    scope = SimpleNamespace(contract_id=tenant.contract_id, clinic_ids=frozenset(tenant.clinic_ids[:1]))
    engine = ctx.db.engine
    query = patient_search.matching(scope, "やまだ").limit(50)
    sql = str(query.compile(engine, compile_kwargs={"literal_binds": True}))
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            plan = " | ".join(str(r[-1]) for r in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + sql))
            assert "TEMP B-TREE" not in plan, plan
        else:
            conn.exec_driver_sql("SET enable_seqscan = off")  # a tiny table: make the planner show its index plan
            plan = " | ".join(str(r[0]) for r in conn.exec_driver_sql("EXPLAIN " + sql))
            assert "Sort" not in plan, plan
    assert "ix_patient_search_terms_contract_id_term_sort_key_patient_id" in plan, plan
    assert "SCAN patient_search_terms" not in plan and "Seq Scan" not in plan, plan


def test_migration_0006_rebuilds_the_search_rows_of_existing_patients(fresh_database_url: str) -> None:
    engine = make_engine(fresh_database_url)
    try:
        migrate.upgrade(engine, "0005")
        contract, clinic, pid = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
        t = sa.table
        c = sa.column
        now = datetime.now(UTC)
        with engine.begin() as conn:
            conn.execute(t("contracts", c("id", sa.Uuid()), c("name"), c("plan_hours"), c("created_at"),
                           c("stored_video_ms"), c("feed_seq")).insert(),
                         {"id": contract, "name": "x", "plan_hours": 1, "created_at": now, "stored_video_ms": 0,
                          "feed_seq": 0})
            conn.execute(t("clinics", c("id", sa.Uuid()), c("contract_id", sa.Uuid()), c("name"),
                           c("created_at")).insert(),
                         {"id": clinic, "contract_id": contract, "name": "x", "created_at": now})
            conn.execute(t("patients", c("id", sa.Uuid()), c("contract_id", sa.Uuid()), c("clinic_id", sa.Uuid()),
                           c("chart_no"), c("name"), c("name_kana"), c("sex"), c("created_at"),
                           c("updated_at")).insert(),
                         {"id": pid, "contract_id": contract, "clinic_id": clinic, "chart_no": "0042",
                          "name": "山田 太郎", "name_kana": "ﾔﾏﾀﾞ ﾀﾛｳ", "sex": "male", "created_at": now,
                          "updated_at": now})
            conn.execute(t("patient_search_terms", c("patient_id", sa.Uuid()), c("contract_id", sa.Uuid()),
                           c("term")).insert(),
                         [{"patient_id": pid, "contract_id": contract, "term": term}
                          for term in search_terms("0042", "山田 太郎", "ﾔﾏﾀﾞ ﾀﾛｳ")])
        migrate.upgrade(engine)
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT term, sort_key FROM patient_search_terms")).all()
        assert {term for term, _ in rows} == patient_search.prefixes("0042", "山田 太郎", "ﾔﾏﾀﾞ ﾀﾛｳ")
        assert {"0", "004", "や", "やまだた", "たろ", "山", "山田太郎"} <= {term for term, _ in rows}
        assert {key for _, key in rows} == {"やまだ たろう"}
    finally:
        engine.dispose()


def test_a_long_query_reads_its_candidates_page_by_page_in_order(
    ctx: Context, tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(patient_search, "_CHUNK", 2)  # several rounds with the next-page condition
    stem = "ジュゲムジュゲム ゴコウノスリキレ カイジャリスイギョ"
    kana = [f"{stem}{end} タロウ" for end in ("ノア", "ノイ", "ヘ", "ノウ", "ホ", "ノエ")]
    for i, k in enumerate(kana):
        make_patient(ctx, tenant.contract_id, tenant.clinic_ids[0], str(i), f"寿限無 {i}", k, sex="male")
    key = search_key(stem + "ノ")
    assert len(key) > patient_search.PREFIX_CAP
    scope = SimpleNamespace(contract_id=tenant.contract_id, clinic_ids=None)
    with ctx.db.read() as s:
        found = [p.name_kana for p in patient_search.find_patients(s, scope, key, 50)]
        first_two = [p.name_kana for p in patient_search.find_patients(s, scope, key, 2)]
    expected = sorted((k for k in kana if search_key(k).startswith(key)), key=fold)
    assert len(expected) == 4
    assert found == expected
    assert first_two == expected[:2]
