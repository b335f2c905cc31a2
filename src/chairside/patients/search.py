"""Patient search: one index walk in result order, whatever the query.

`patient_search_terms` holds, per patient, every distinct prefix (up to PREFIX_CAP characters)
of its search terms (domain.kana.search_terms: chart number, name and kana, whole and word by
word), each with the patient's sort key, the folded kana name. A query is folded the same way
(domain.kana.search_key) and looked up by equality on (contract_id, term): the index
(contract_id, term, sort_key, patient_id) hands the matching patients over already in kana
order, one row per patient, so the database reads as many index entries as the page holds,
for 「さ」 as for a whole chart number. The patients are joined by primary key through
tenancy/visibility.py, which stays the one place that decides what a caller may see.

A query longer than PREFIX_CAP characters is looked up by its first PREFIX_CAP characters,
and the candidates (few: they share a 24-character prefix) are checked against the whole key.

Chart numbers match without their leading zeros: clinics print 01001 and say "1001". A query of
digits not starting with 0 is also looked up with up to CHART_ZEROS zeros in front ("1001",
"01001", "001001", …): a handful of equality lookups on the same index, and no new rows, so the
patients indexed before this rule are found too.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import Select, delete, insert, tuple_
from sqlalchemy.orm import Session

from chairside.db.models import Patient, PatientSearchTerm
from chairside.domain.kana import fold, search_terms
from chairside.tenancy import visibility

PREFIX_CAP = 24  # longer terms are stored up to here; longer queries are checked in Python
SORT_KEY_LENGTH = 200  # the column's length
_CHUNK = 200  # candidates read per round for a query longer than PREFIX_CAP
CHART_ZEROS = 8  # "1001" also finds 0001001 … 000000001001


def sort_key(name_kana: str) -> str:
    """Where a patient comes in search results: the kana name folded (ﾔﾏﾀﾞ, ヤマダ, やまだ alike)."""
    return fold(name_kana)[:SORT_KEY_LENGTH]


def prefixes(chart_no: str, name: str, name_kana: str) -> set[str]:
    """Every query (up to PREFIX_CAP characters) that finds this patient."""
    return {
        term[:n]
        for term in search_terms(chart_no, name, name_kana)
        for n in range(1, min(len(term), PREFIX_CAP) + 1)
    }


def index_patient(s: Session, patient: Patient) -> None:
    """(Re)write the patient's search rows: every prefix of its terms, with its kana sort key."""
    s.execute(delete(PatientSearchTerm).where(PatientSearchTerm.patient_id == patient.id))
    s.execute(insert(PatientSearchTerm), index_rows(
        patient.id, patient.contract_id, patient.chart_no, patient.name, patient.name_kana))


def index_rows(
    patient_id: uuid.UUID, contract_id: uuid.UUID, chart_no: str, name: str, name_kana: str
) -> list[dict[str, Any]]:
    """The patient_search_terms rows of one patient (the migration and the API both write these)."""
    key = sort_key(name_kana)
    return [
        {"patient_id": patient_id, "contract_id": contract_id, "term": term, "sort_key": key}
        for term in sorted(prefixes(chart_no, name, name_kana))
    ]


def chart_variants(key: str) -> list[str]:
    """The terms a query stands for: itself and, for digits without a leading zero, zero-padded forms."""
    if not key.isascii() or not key.isdigit() or key.startswith("0"):
        return [key]
    return ["0" * zeros + key for zeros in range(min(CHART_ZEROS, PREFIX_CAP - len(key)) + 1)]


def matching(scope: visibility.Scope, key: str) -> Select[Patient]:
    """The patients the caller may see with a term starting with `key` (at most PREFIX_CAP long), in order."""
    terms = chart_variants(key)
    term_rule = PatientSearchTerm.term == key if len(terms) == 1 else PatientSearchTerm.term.in_(terms)
    return (
        visibility.patients(scope)
        .join(PatientSearchTerm, PatientSearchTerm.patient_id == Patient.id)
        .where(PatientSearchTerm.contract_id == scope.contract_id, term_rule)
        .order_by(PatientSearchTerm.sort_key, PatientSearchTerm.patient_id)
    )


def find_patients(session: Session, scope: visibility.Scope, key: str, limit: int) -> list[Patient]:
    """The first `limit` patients, by kana then id, with a search term starting with `key` (a search_key)."""
    if len(key) <= PREFIX_CAP:
        hits = session.scalars(matching(scope, key).limit(limit)).all()
        # A patient matches once per term; with zero-padded chart forms, two of its terms could match.
        return list({hit.id: hit for hit in hits}.values())
    # Candidates share the first PREFIX_CAP characters; keep those a whole term of which starts with key.
    query = matching(scope, key[:PREFIX_CAP]).add_columns(PatientSearchTerm.sort_key)
    found: list[Patient] = []
    after: tuple[str, uuid.UUID] | None = None
    while len(found) < limit:
        page = query if after is None else query.where(
            tuple_(PatientSearchTerm.sort_key, PatientSearchTerm.patient_id) > tuple_(*after))
        rows = session.execute(page.limit(_CHUNK)).all()
        for patient, _ in rows:
            if any(term.startswith(key) for term in search_terms(patient.chart_no, patient.name, patient.name_kana)):
                found.append(patient)
        if len(rows) < _CHUNK:
            break
        after = (rows[-1][1], rows[-1][0].id)
    return found[:limit]
