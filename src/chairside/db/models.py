"""The schema as SQLAlchemy models. The database itself is built by the Alembic migrations only."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    TypeDecorator,
    UniqueConstraint,
    Uuid,
    false,
    text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in and out, on SQLite (which keeps no zone) as on PostgreSQL."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the database; use aware UTC datetimes")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map: ClassVar[dict[Any, Any]] = {datetime: UTCDateTime, uuid.UUID: Uuid(), dict[str, Any]: JSON}

# --- tenancy: contracts, their clinics, the stations and relay boxes of each clinic (tenancy/) --------------

class Contract(Base):
    __tablename__ = "contracts"
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    name: Mapped[str] = mapped_column(String(200))
    plan_hours: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # Milliseconds of video stored, trash included: changed only by an atomic UPDATE in the same
    # transaction that inserts or purges a video row (chairside.quota.usage). Never recomputed on a request.
    stored_video_ms: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    # Where quota notices are e-mailed; None or [] sends none (they are still listed by the API).
    contact_emails: Mapped[list[str] | None] = mapped_column(JSON, nullable=True)
    # The last sequence number of this contract's changes feed (chairside.feed.changes): taken by an
    # atomic UPDATE in the transaction that writes the event, so events are ordered and gapless.
    feed_seq: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    # The day the contract's cancellation notice was received (None: not cancelled); billing applies
    # the 10-day rule to it (domain.billing.contract_end_for_notice).
    cancellation_notice_on: Mapped[date | None] = mapped_column(Date, nullable=True)


class Clinic(Base):
    __tablename__ = "clinics"
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    contract_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("contracts.id"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # How the viewer shows tooth numbers for this clinic's patients: "fdi" (16) or "palmer" (6┘, the
    # Japanese Zsigmondy–Palmer form); stored numbers are FDI either way (domain/teeth.py).
    tooth_notation: Mapped[str] = mapped_column(String(10), default="fdi", server_default="fdi")


class Station(Base):
    """A capture PC at a chair. Its bearer token is stored only as a SHA-256 hash."""

    __tablename__ = "stations"
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    contract_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("contracts.id"), index=True)
    clinic_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("clinics.id"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    # None: every clinic of the contract; otherwise a list of clinic ids (as strings).
    clinic_scope: Mapped[list[str] | None] = mapped_column(JSON, nullable=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(nullable=True)


class Relay(Base):
    """A clinic's relay box. Its bearer token (cs_rl_…) is stored only as a SHA-256 hash."""

    __tablename__ = "relays"
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    contract_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("contracts.id"), index=True)
    clinic_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("clinics.id"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(nullable=True)
    last_seen_at: Mapped[datetime | None] = mapped_column(nullable=True)


# --- auth: viewer accounts, device sessions, enrollment, sign-in throttling, the audit trail (auth/) --------

class Account(Base):
    """A viewer login of a contract. The password is stored only as an argon2id hash."""

    __tablename__ = "accounts"
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    contract_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("contracts.id"), index=True)
    login: Mapped[str] = mapped_column(String(100), unique=True)
    password_hash: Mapped[str] = mapped_column(String(200))
    is_admin: Mapped[bool] = mapped_column(default=False)
    # None: every clinic of the contract; otherwise a list of clinic ids (as strings).
    clinic_scope: Mapped[list[str] | None] = mapped_column(JSON, nullable=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    disabled_at: Mapped[datetime | None] = mapped_column(nullable=True)


class DeviceSession(Base):
    """A signed-in device. One account has at most one active session at a time."""

    __tablename__ = "sessions"
    __table_args__ = (Index(None, "account_id", "ended_at"),)
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("accounts.id"))
    contract_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("contracts.id"))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    device_name: Mapped[str] = mapped_column(String(100))
    address: Mapped[str] = mapped_column(String(64), default="")
    user_agent: Mapped[str] = mapped_column(String(300), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
    ended_at: Mapped[datetime | None] = mapped_column(nullable=True)
    # signout | takeover | idle, or an admin's act (auth/admin.py): admin | password-reset | disabled
    end_reason: Mapped[str | None] = mapped_column(String(20), nullable=True)
    ended_by_device: Mapped[str | None] = mapped_column(String(100), nullable=True)


class EnrollmentCode(Base):
    """A one-time code a new station exchanges for its own token; stored hashed, short-lived."""

    __tablename__ = "enrollment_codes"
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    contract_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("contracts.id"))
    clinic_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("clinics.id"))
    code_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None] = mapped_column(nullable=True)
    station_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("stations.id"), nullable=True)


class SignInThrottle(Base):
    """Failed sign-ins per key (a login, or a source address), for throttling."""

    __tablename__ = "signin_throttle"
    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    failures: Mapped[int] = mapped_column(default=0)
    first_failure_at: Mapped[datetime]
    blocked_until: Mapped[datetime | None] = mapped_column(nullable=True)


class AuditEvent(Base):
    """Who saw or changed what. Append-only: the application has no update or delete path,
    and database triggers refuse both."""

    __tablename__ = "audit_events"
    __table_args__ = (Index(None, "contract_id", "id"), Index(None, "contract_id", "patient_id", "id"))
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    contract_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("contracts.id"))
    at: Mapped[datetime] = mapped_column(default=utcnow)
    actor_kind: Mapped[str] = mapped_column(String(20))  # station | account | operator | system
    actor_id: Mapped[uuid.UUID | None] = mapped_column(nullable=True)
    actor_name: Mapped[str] = mapped_column(String(200), default="")
    device: Mapped[str] = mapped_column(String(100), default="")
    address: Mapped[str] = mapped_column(String(64), default="")
    action: Mapped[str] = mapped_column(String(40))
    patient_id: Mapped[uuid.UUID | None] = mapped_column(nullable=True)
    media_id: Mapped[uuid.UUID | None] = mapped_column(nullable=True)
    detail: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)


# --- patients and their search terms (patients/) ------------------------------------------------------------

class Patient(Base):
    __tablename__ = "patients"
    # A chart number is unique per clinic among patients not flagged for a merge: the same number
    # created offline at two relays is kept twice, the later one flagged (`merge_with`), never joined.
    __table_args__ = (
        Index("uq_patients_clinic_id_chart_no", "clinic_id", "chart_no", unique=True,
              sqlite_where=text("merge_with IS NULL"), postgresql_where=text("merge_with IS NULL")),
        # The patient list without a query: the most recently updated first, read in index order.
        Index(None, "contract_id", "updated_at", "id"),
    )
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    contract_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("contracts.id"), index=True)
    clinic_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("clinics.id"))
    chart_no: Mapped[str] = mapped_column(String(40))
    name: Mapped[str] = mapped_column(String(200))
    name_kana: Mapped[str] = mapped_column(String(200))
    birth_date: Mapped[date | None] = mapped_column(Date, nullable=True)
    sex: Mapped[str] = mapped_column(String(10))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    # Per field, the hybrid logical clock of its last write (domain.hlc): last writer wins per field.
    field_clocks: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    # Set when this patient was created (offline, at a relay) with a chart number another patient of
    # the clinic already had: staff must merge the two. None for every ordinary patient.
    merge_with: Mapped[uuid.UUID | None] = mapped_column(nullable=True)


class PatientSearchTerm(Base):
    """Every prefix a patient is found by, one row each, with the patient's place in the result order.

    `term` is each distinct prefix (up to db.search.PREFIX_CAP characters) of the normalised
    chart number, name and kana words (domain.kana.search_terms); `sort_key` is the folded kana
    name. A search is then one equality lookup on (contract_id, term) that walks the index
    already in (sort_key, patient_id) order and stops at the page size: no range, no sort, no
    duplicates. Rows are written by db.search.index_rows only.
    """

    __tablename__ = "patient_search_terms"
    __table_args__ = (Index(None, "contract_id", "term", "sort_key", "patient_id"),)
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    patient_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("patients.id", ondelete="CASCADE"), index=True)
    contract_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("contracts.id"))
    term: Mapped[str] = mapped_column(String(200))
    # Code-point order on PostgreSQL too (SQLite compares bytes), whatever the database's locale.
    sort_key: Mapped[str] = mapped_column(String(200).with_variant(String(200, collation="C"), "postgresql"))


# --- media: items, annotations, tags, browser-ready copies (media/) -----------------------------------------

class Media(Base):
    """A video or photo of one patient. Content is immutable and addressed by SHA-256."""

    __tablename__ = "media"
    __table_args__ = (Index(None, "patient_id", "captured_at"),)
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)  # made by the client (UUIDv7 advised)
    contract_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("contracts.id"), index=True)
    clinic_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("clinics.id"))
    patient_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("patients.id"))
    kind: Mapped[str] = mapped_column(String(10))  # video | image
    mime: Mapped[str] = mapped_column(String(50))
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    size: Mapped[int] = mapped_column(BigInteger)
    filename: Mapped[str] = mapped_column(String(255))
    captured_at: Mapped[datetime]
    duration_s: Mapped[float | None] = mapped_column(Float, nullable=True)
    width: Mapped[int | None] = mapped_column(nullable=True)
    height: Mapped[int | None] = mapped_column(nullable=True)
    fps: Mapped[float | None] = mapped_column(Float, nullable=True)
    codec: Mapped[str | None] = mapped_column(String(20), nullable=True)
    bitrate: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    orientation: Mapped[int | None] = mapped_column(nullable=True)
    thumb_sha256: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    source: Mapped[str] = mapped_column(String(20))  # station | viewer | migration
    station_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("stations.id"), nullable=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    deleted_at: Mapped[datetime | None] = mapped_column(nullable=True)  # in the trash when set


class Annotation(Base):
    """An annotation drawn over a photo or a paused video frame, kept apart from the original.

    `shapes` are vector shapes in coordinates normalised to 0..1 of the picture (see
    `media/annotations.py`); `media_time_s` is the video time the annotation belongs to (None
    for a photo). `version` grows by one with every change: an update names the version
    it replaces, so two devices cannot silently overwrite each other."""

    __tablename__ = "annotations"
    __table_args__ = (Index(None, "media_id", "created_at"),)
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    contract_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("contracts.id"))
    media_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("media.id", ondelete="CASCADE"))
    media_time_s: Mapped[float | None] = mapped_column(Float, nullable=True)
    shapes: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    version: Mapped[int] = mapped_column(Integer, default=1)
    author_id: Mapped[uuid.UUID | None] = mapped_column(nullable=True)  # the account or station
    author_name: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class MediaTag(Base):
    """A short label on a media item (e.g. 術前, 術後), for filtering a patient's timeline."""

    __tablename__ = "media_tags"
    media_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("media.id", ondelete="CASCADE"), primary_key=True)
    tag: Mapped[str] = mapped_column(String(40), primary_key=True)
    contract_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("contracts.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class MediaTooth(Base):
    """A tooth an item shows, by its FDI number (domain/teeth.py); an item has a set of them. The primary key
    (media_id, tooth) answers "which teeth" for an item and "does it show tooth N" in one index probe."""

    __tablename__ = "media_teeth"
    media_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("media.id", ondelete="CASCADE"), primary_key=True)
    tooth: Mapped[int] = mapped_column(Integer, primary_key=True)
    contract_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("contracts.id"))


class Note(Base):
    """Free text about a media item or a patient (media/notes.py): one per item or patient, by its id.
    Cleared is "" (kept, so the latest write wins wherever it was made: relay or cloud)."""

    __tablename__ = "notes"
    entity_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)  # the media item's or the patient's id
    kind: Mapped[str] = mapped_column(String(10))  # media | patient
    contract_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("contracts.id"), index=True)
    # The same id again, as the one foreign key that applies: a purge or a patient's removal takes the note.
    media_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("media.id", ondelete="CASCADE"), nullable=True,
                                                       index=True)
    patient_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("patients.id", ondelete="CASCADE"),
                                                         nullable=True, index=True)
    text: Mapped[str] = mapped_column(String(2000), default="")
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    author_id: Mapped[uuid.UUID | None] = mapped_column(nullable=True)  # the account (or station)
    author_name: Mapped[str] = mapped_column(String(200), default="")


class MediaDerivative(Base):
    """A browser-ready copy of a media item, made on first use and kept as a blob: today the
    upright JPEG shown for a HEIC (or very large) photo. The original is never changed."""

    __tablename__ = "media_derivatives"
    media_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("media.id", ondelete="CASCADE"), primary_key=True)
    kind: Mapped[str] = mapped_column(String(20), primary_key=True)  # display
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    size: Mapped[int] = mapped_column(BigInteger)
    mime: Mapped[str] = mapped_column(String(50))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


# --- uploads in progress (uploads/) -------------------------------------------------------------------------

class Upload(Base):
    """A tus upload in progress (or just finished). The offset here is the authority on resume."""

    __tablename__ = "uploads"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    contract_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("contracts.id"))
    patient_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("patients.id"))
    media_id: Mapped[uuid.UUID] = mapped_column(index=True)
    station_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("stations.id"), nullable=True)
    filename: Mapped[str] = mapped_column(String(255))
    captured_at: Mapped[datetime | None] = mapped_column(nullable=True)
    length: Mapped[int] = mapped_column(BigInteger)
    offset: Mapped[int] = mapped_column(BigInteger, default=0)
    upload_metadata: Mapped[str] = mapped_column(String(4000), default="")  # raw Upload-Metadata header
    expected_sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(index=True)
    completed_at: Mapped[datetime | None] = mapped_column(nullable=True)
    # The contract was at or over its video limit when this upload was created: if the bytes turn out
    # to be a video, it is refused at completion unless room was made meanwhile (chairside.quota.usage).
    created_over_limit: Mapped[bool] = mapped_column(default=False, server_default=false())


# --- plans, quotas and notices (quota/); issued invoices (billing/) -----------------------------------------

class PlanChange(Base):
    """The contract's plan is `hours` from `effective_at` on: the history that billing reads."""

    __tablename__ = "plan_changes"
    __table_args__ = (Index(None, "contract_id", "effective_at"),)
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    contract_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("contracts.id"))
    hours: Mapped[int] = mapped_column(Integer)
    previous_hours: Mapped[int | None] = mapped_column(Integer, nullable=True)  # None for the first plan
    effective_at: Mapped[datetime] = mapped_column(default=utcnow)
    reason: Mapped[str] = mapped_column(String(20))  # onboarding | operator | request
    request_id: Mapped[uuid.UUID | None] = mapped_column(nullable=True)
    actor: Mapped[str] = mapped_column(String(200), default="")


class PlanRequest(Base):
    """A contract admin asks for a larger plan; the operator approves or declines it once."""

    __tablename__ = "plan_requests"
    __table_args__ = (Index(None, "contract_id", "requested_at"),)
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    contract_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("contracts.id"))
    hours: Mapped[int] = mapped_column(Integer)  # the plan asked for (not the increase)
    plan_hours_then: Mapped[int] = mapped_column(Integer)
    requested_by: Mapped[uuid.UUID | None] = mapped_column(nullable=True)  # the account
    requested_by_name: Mapped[str] = mapped_column(String(200), default="")
    requested_at: Mapped[datetime] = mapped_column(default=utcnow)
    status: Mapped[str] = mapped_column(String(10), default="pending")  # pending | approved | declined
    decided_at: Mapped[datetime | None] = mapped_column(nullable=True)
    decided_by: Mapped[str | None] = mapped_column(String(200), nullable=True)
    reason: Mapped[str | None] = mapped_column(String(500), nullable=True)


class QuotaDaily(Base):
    """Video recorded and freed per contract and Japanese calendar day, for the forecast."""

    __tablename__ = "quota_daily"
    contract_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("contracts.id"), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    recorded_ms: Mapped[int] = mapped_column(BigInteger, default=0)
    freed_ms: Mapped[int] = mapped_column(BigInteger, default=0)


class Notice(Base):
    """A message to the contract, e.g. its stored video hours crossed 80 % of the plan.

    One row per (contract, threshold, crossing): the n-th upward crossing of a threshold
    is inserted once, in the transaction that moved the counter across it."""

    __tablename__ = "notices"
    __table_args__ = (
        UniqueConstraint("contract_id", "threshold_percent", "crossing"),
        Index(None, "contract_id", "created_at"),
    )
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    contract_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("contracts.id"))
    kind: Mapped[str] = mapped_column(String(20))  # quota
    threshold_percent: Mapped[int] = mapped_column(Integer)
    crossing: Mapped[int] = mapped_column(Integer)
    used_ms: Mapped[int] = mapped_column(BigInteger)
    plan_hours: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class IssuedInvoice(Base):
    """An invoice sent to a contract, and when it was paid: the ledger that late interest reads."""

    __tablename__ = "issued_invoices"
    __table_args__ = (UniqueConstraint("contract_id", "month"),)
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    contract_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("contracts.id"))
    month: Mapped[str] = mapped_column(String(7))  # YYYY-MM, the month billed
    amount_yen: Mapped[int] = mapped_column(BigInteger)
    # What late interest on it accrues on: amount_yen less the late-interest lines it carried (no interest
    # on interest). Rows issued before migration 0008 hold their amount_yen (their lines were not kept).
    interest_base_yen: Mapped[int] = mapped_column(BigInteger)
    issued_on: Mapped[date] = mapped_column(Date)
    due_on: Mapped[date] = mapped_column(Date)
    paid_on: Mapped[date | None] = mapped_column(Date, nullable=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


# --- background jobs (jobs/) --------------------------------------------------------------------------------

class Job(Base):
    """Work to do outside the request (an outbox): claimed with a lease, retried with backoff."""

    __tablename__ = "jobs"
    __table_args__ = (Index(None, "done_at", "run_after"),)
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    kind: Mapped[str] = mapped_column(String(40))
    key: Mapped[str | None] = mapped_column(String(200), unique=True, nullable=True)  # at most one job per key
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    run_after: Mapped[datetime] = mapped_column(default=utcnow)
    attempts: Mapped[int] = mapped_column(default=0)
    lease_token: Mapped[str | None] = mapped_column(String(32), nullable=True)
    lease_until: Mapped[datetime | None] = mapped_column(nullable=True)
    done_at: Mapped[datetime | None] = mapped_column(nullable=True)
    dead_at: Mapped[datetime | None] = mapped_column(nullable=True)  # gave up after the last attempt
    last_error: Mapped[str | None] = mapped_column(String(1000), nullable=True)
    result: Mapped[str | None] = mapped_column(String(200), nullable=True)  # a note from the finished job


# --- the cloud's side of replication: the changes feed, relay ops applied once (feed/) ----------------------

class Change(Base):
    """One event of a contract's changes feed (the cloud's): a row as it now is, or a tombstone.

    `seq` rises by one per contract with no gaps; `clinic_id` is the clinic whose visibility
    governs the event (a patient's clinic, for its media too), None for contract-wide events."""

    __tablename__ = "changes"
    __table_args__ = (UniqueConstraint("contract_id", "seq"),)
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    contract_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("contracts.id"))
    seq: Mapped[int] = mapped_column(BigInteger)
    kind: Mapped[str] = mapped_column(String(30))
    entity_id: Mapped[uuid.UUID]
    clinic_id: Mapped[uuid.UUID | None] = mapped_column(nullable=True)
    body: Mapped[dict[str, Any]] = mapped_column(JSON)
    at: Mapped[datetime] = mapped_column(default=utcnow)


class AppliedOp(Base):
    """An operation sent by a relay and applied by the cloud, kept so that a retry applies nothing."""

    __tablename__ = "applied_ops"
    op_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    contract_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("contracts.id"))
    kind: Mapped[str] = mapped_column(String(30))
    applied_at: Mapped[datetime] = mapped_column(default=utcnow)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)


# --- the relay's own tables: its outbox, its blob cache, its state (relay/) ---------------------------------

class OutboxOp(Base):
    """A write made at the relay, waiting to be carried to the cloud (in `id` order)."""

    __tablename__ = "outbox"
    __table_args__ = (Index(None, "done_at", "id"),)
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    op_id: Mapped[uuid.UUID] = mapped_column(unique=True)  # made at the edge; the cloud applies it once
    kind: Mapped[str] = mapped_column(String(30))  # patient.create | patient.update | media.upload | media.trash …
    entity_id: Mapped[uuid.UUID]  # the patient or media item
    body: Mapped[dict[str, Any]] = mapped_column(JSON)
    size: Mapped[int] = mapped_column(BigInteger, default=0)  # bytes to send (media.upload)
    sent_bytes: Mapped[int] = mapped_column(BigInteger, default=0)  # the cloud's offset, last seen
    upstream_url: Mapped[str | None] = mapped_column(String(500), nullable=True)  # the cloud's tus upload
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_try_at: Mapped[datetime | None] = mapped_column(nullable=True)
    last_error: Mapped[str | None] = mapped_column(String(1000), nullable=True)
    done_at: Mapped[datetime | None] = mapped_column(nullable=True)
    failed_at: Mapped[datetime | None] = mapped_column(nullable=True)  # refused by the cloud for good


class CachedBlob(Base):
    """A blob held by the relay. `pinned` ones are not yet confirmed by the cloud: never evicted."""

    __tablename__ = "cached_blobs"
    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    size: Mapped[int] = mapped_column(BigInteger)
    pinned: Mapped[bool] = mapped_column(default=False)
    last_used_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)


class RelayState(Base):
    """The relay's own small facts: the feed cursor, the last contact with the cloud, …"""

    __tablename__ = "relay_state"
    key: Mapped[str] = mapped_column(String(50), primary_key=True)
    value: Mapped[dict[str, Any]] = mapped_column(JSON)


# --- the mirror site: registered mirrors, what each has verified, the epoch (mirror/) ----------------------

class Mirror(Base):
    """A standby site following this cloud. Its bearer token (cs_mr_…) is stored only as a SHA-256 hash."""

    __tablename__ = "mirrors"
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    name: Mapped[str] = mapped_column(String(200))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(nullable=True)
    last_seen_at: Mapped[datetime | None] = mapped_column(nullable=True)


class MirrorProgress(Base):
    """How far a mirror has copied and verified the blobs of one contract's changes feed (its `seq`)."""

    __tablename__ = "mirror_progress"
    mirror_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("mirrors.id"), primary_key=True)
    contract_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("contracts.id"), primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger, default=0)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class SiteState(Base):
    """One row (id 1): the deployment's identity and this site's epoch, and a newer epoch heard of (fenced)."""

    __tablename__ = "site_state"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    deployment_id: Mapped[uuid.UUID]
    epoch: Mapped[int] = mapped_column(BigInteger, default=1)
    promoted_at: Mapped[datetime | None] = mapped_column(nullable=True)
    # A newer epoch taken elsewhere: every write here is refused, naming that primary.
    fenced_epoch: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    fenced_primary: Mapped[str | None] = mapped_column(String(500), nullable=True)
    fenced_at: Mapped[datetime | None] = mapped_column(nullable=True)


# --- netcheck: onboarding line-check codes (netcheck/) -----------------------------------------------------

class NetcheckCode(Base):
    """A code that opens the cloud's line-check endpoints to one clinic for a few runs; stored hashed, expiring.

    `runs` counts the runs started with it (at most `netcheck_code_runs`); a run's measurement requests are
    accepted until `run_until` (docs/netcheck.md)."""

    __tablename__ = "netcheck_codes"
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    contract_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("contracts.id"), index=True)
    code_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
    runs: Mapped[int] = mapped_column(Integer, default=0)
    run_until: Mapped[datetime | None] = mapped_column(nullable=True)


# --- keys: data keys for encryption at rest, wrapped by the master key (keys/) ------------------------------

class DataKey(Base):
    """A 256-bit data key, stored only wrapped by the master key named in `master_key_id` (docs/security.md).

    `scope` is `site` or `contract:<uuid>`; the newest key of a scope encrypts new blobs, every key stays
    readable by its `id` (the id an encrypted blob's header names). Rotating the master key rewrites
    `wrapped` and `master_key_id` only: no blob is re-encrypted."""

    __tablename__ = "data_keys"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    scope: Mapped[str] = mapped_column(String(64), index=True)
    wrapped: Mapped[bytes] = mapped_column(LargeBinary)
    master_key_id: Mapped[str] = mapped_column(String(64), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


# --- sharing: expiring read-only links for a patient (sharing/) ------------------------------------------------

class ShareLink(Base):
    """A read-only link to some of one patient's items, opened without an account (docs/viewer.md).

    Only the SHA-256 of its token is kept (`token_hash`); the token itself is shown once, in the link. A link is
    usable until `expires_at`, unless `revoked_at` is set; `media_ids` are the chosen items, in order."""

    __tablename__ = "share_links"
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    contract_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("contracts.id"), index=True)
    patient_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("patients.id"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    media_ids: Mapped[list[str]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None] = mapped_column(nullable=True)
    created_by: Mapped[uuid.UUID | None] = mapped_column(nullable=True)  # the account (or station) that made it


# --- uploads streamed to an S3 store (uploads/s3stream.py) -----------------------------------------------------

class UploadS3State(Base):
    """Where a tus upload's bytes are in the object store: a multipart upload's parts, then a tail object.

    Bytes `[0, parts_bytes)` are the parts listed in `parts` (`[[number, etag, size], …]`, each a full part);
    bytes `[parts_bytes, uploads.offset)` are the object `tail_key` (shorter than one part). Updated in the same
    transaction as the upload's offset, so any server resumes the upload from here (docs/operations.md)."""

    __tablename__ = "upload_s3_state"
    upload_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    s3_upload_id: Mapped[str | None] = mapped_column(String(1024), nullable=True)
    parts: Mapped[list[list[Any]]] = mapped_column(JSON, default=list)
    parts_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    tail_key: Mapped[str | None] = mapped_column(String(1024), nullable=True)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
