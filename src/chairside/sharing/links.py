"""Share links: some of one patient's items, opened read-only on the patient's phone without an account.

The one write path for making and revoking a link, and the one place that decides what a link opens.

- The token is 192 random bits (`secrets.token_urlsafe(24)`), shown once in the link's URL; only its SHA-256
  is stored, so a copy of the database opens nothing.
- A link names items of a single patient, each visible to its maker when it is made; at each use it opens
  only those items that are still in the same contract and not in the trash.
- A wrong, expired or revoked token are one and the same answer (`NOT_FOUND`): nobody can tell which.
- A chosen HEIC photo's display JPEG is made right after the link is made (`prepare`), not at the first view.
- Every page view is recorded in the audit trail (`share.view`), and each item's bytes once per viewer address
  within `audit.READ_COALESCE_S` (`share.content`): a video played with seeking makes dozens of requests.
"""

from __future__ import annotations

import contextlib
import hashlib
import secrets
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select

from chairside.auth import audit
from chairside.auth.principal import Principal
from chairside.context import Context
from chairside.db.models import AuditEvent, Clinic, Media, Patient, ShareLink, utcnow
from chairside.errors import Problem
from chairside.media import derivatives
from chairside.media.items import not_found as media_not_found
from chairside.patients import service as patients_service
from chairside.tenancy import visibility

MAX_ITEMS = 50
MIN_TTL_S = 60
TOKEN_BYTES = 24  # 192 bits

NOT_FOUND_DETAIL = (
    "このリンクは使えません。期限が切れたか、取り消されたか、入力に誤りがあります。医院にお問い合わせください。"
    " / This link cannot be opened: it has expired, was withdrawn, or is mistyped. Please ask the clinic."
)


def not_found() -> Problem:
    """The one answer for a wrong, expired or revoked link, and for an item a link does not name."""
    return Problem(404, NOT_FOUND_DETAIL, code="share-link-not-found")


def link_not_found() -> Problem:
    """For the clinic's side (revoking): a link of another contract or of a patient out of sight."""
    return Problem(404, "This share link was not found. It may belong to a patient you cannot see.",
                   code="share-link-not-found")


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class Shared:
    """What a valid link opens: the link, its clinic's name, and its items (still there) in the chosen order."""

    link: ShareLink
    clinic_name: str
    items: tuple[Media, ...]

    def item(self, media_id: uuid.UUID) -> Media:
        for item in self.items:
            if item.id == media_id:
                return item
        raise not_found()


def create(ctx: Context, principal: Principal, media_ids: Sequence[uuid.UUID],
           expires_in_s: int | None = None) -> tuple[ShareLink, str]:
    """Make a link to visible items of one patient; answers the row and the token (never stored)."""
    chosen = list(dict.fromkeys(media_ids))
    if not chosen:
        raise Problem(422, "Choose at least one photo or video to share.", code="invalid")
    if len(chosen) > MAX_ITEMS:
        raise Problem(422, f"A share link can hold at most {MAX_ITEMS} items. Choose fewer.", code="invalid")
    ttl = ctx.settings.share_link_ttl_s if expires_in_s is None else expires_in_s
    if not MIN_TTL_S <= ttl <= ctx.settings.share_link_max_ttl_s:
        raise Problem(422, f"A share link's lifetime must be between {MIN_TTL_S} seconds and "
                      f"{ctx.settings.share_link_max_ttl_s // 86400} days.", code="invalid")
    token = secrets.token_urlsafe(TOKEN_BYTES)
    with ctx.db.session() as s:
        items = []
        for media_id in chosen:
            item = visibility.media_item(s, principal, media_id)  # not in the trash, in sight: else as missing
            if item is None:
                raise media_not_found()
            items.append(item)
        patients = {item.patient_id for item in items}
        if len(patients) != 1:
            raise Problem(422, "A share link shows one patient's items only. Choose items of a single patient.",
                          code="several-patients")
        now = utcnow()
        link = ShareLink(contract_id=principal.contract_id, patient_id=patients.pop(), token_hash=token_hash(token),
                         media_ids=[str(m) for m in chosen], created_at=now, expires_at=now + timedelta(seconds=ttl),
                         created_by=principal.account_id or principal.station_id)
        s.add(link)
        s.flush()
        audit.add(s, principal, "share.create", patient_id=link.patient_id,
                  detail={"link_id": str(link.id), "media_ids": link.media_ids,
                          "expires_at": link.expires_at.isoformat()})
    return link, token


def revoke(ctx: Context, principal: Principal, link_id: uuid.UUID) -> ShareLink:
    """Close a link of a visible patient at once (again: no change). Audited."""
    with ctx.db.session() as s:
        link = s.get(ShareLink, link_id)
        if link is None or link.contract_id != principal.contract_id or \
                visibility.patient(s, principal, link.patient_id) is None:
            raise link_not_found()
        if link.revoked_at is None:
            link.revoked_at = utcnow()
            audit.add(s, principal, "share.revoke", patient_id=link.patient_id, detail={"link_id": str(link.id)})
        return link


def links_of(ctx: Context, principal: Principal, patient_id: uuid.UUID) -> list[ShareLink]:
    """A visible patient's links still open, newest first."""
    with ctx.db.read() as s:
        if visibility.patient(s, principal, patient_id) is None:  # another contract's, out of scope or none: alike
            raise patients_service.not_found()
        q = select(ShareLink).where(ShareLink.contract_id == principal.contract_id, ShareLink.patient_id == patient_id,
                                    ShareLink.revoked_at.is_(None), ShareLink.expires_at > utcnow())
        return list(s.scalars(q.order_by(ShareLink.created_at.desc())).all())


def resolve(ctx: Context, token: str, *, now: datetime | None = None) -> Shared:
    """What the token opens; `not_found()` for a wrong, expired or revoked token, alike."""
    if not token or len(token) > 200:
        raise not_found()
    digest = token_hash(token)
    moment = now or utcnow()
    with ctx.db.read() as s:
        link = s.scalar(select(ShareLink).where(ShareLink.token_hash == digest))
        # compare_digest: the lookup is by hash already; this keeps the final check constant-time too
        if link is None or not secrets.compare_digest(link.token_hash, digest) or link.revoked_at is not None \
                or link.expires_at <= moment:
            raise not_found()
        wanted = [uuid.UUID(m) for m in link.media_ids]
        rows = s.scalars(select(Media).where(Media.id.in_(wanted), Media.contract_id == link.contract_id,
                                             Media.patient_id == link.patient_id, Media.deleted_at.is_(None))).all()
        by_id = {m.id: m for m in rows}
        clinic_name = s.scalar(select(Clinic.name).join(Patient, Patient.clinic_id == Clinic.id)
                               .where(Patient.id == link.patient_id)) or ""
        return Shared(link, clinic_name, tuple(by_id[m] for m in wanted if m in by_id))


def prepare(ctx: Context, link_id: uuid.UUID) -> int:
    """Make the display JPEG of each chosen photo that needs one (HEIC, very large), so that the patient's first
    view does not wait seconds for it; run after the link was handed out. Answers how many were made or found."""
    with ctx.db.read() as s:
        link = s.get(ShareLink, link_id)
        if link is None:
            return 0
        wanted = [uuid.UUID(m) for m in link.media_ids]
        photos = s.scalars(select(Media).where(Media.id.in_(wanted), Media.kind == "image",
                                               Media.deleted_at.is_(None))).all()
    made = 0
    for item in photos:
        if not derivatives.shown_as_is(item):
            with contextlib.suppress(Problem):  # one that cannot be decoded says so when it is opened
                derivatives.display_copy(ctx, item)
                made += 1
    return made


_recent = audit.RecentReads()


def record_view(ctx: Context, shared: Shared, action: str, *, address: str, device: str,
                media_id: uuid.UUID | None = None) -> None:
    """Record a use of the link: every page view (`share.view`); an item's bytes once per address a while."""
    if action != "share.view" and not _recent.fresh((shared.link.id, action, media_id, address)):
        return
    with ctx.db.session() as s:
        s.add(AuditEvent(contract_id=shared.link.contract_id, actor_kind="share-link", actor_id=shared.link.id,
                         actor_name="share link", device=device[:100], address=address[:64], action=action,
                         patient_id=shared.link.patient_id, media_id=media_id,
                         detail={"link_id": str(shared.link.id)}))
