"""Changing a contract's plan: onboarding, the operator's changes, and requests from a contract admin.

Every change is checked by `domain.plans` (100 to 4000 hours in steps of 100, never
below the hours already stored), applies at once, and is written to `plan_changes`
with its time: billing reads that history (the plan in force on the 1st of a month is
billed for that month, docs/billing.md rule 5). A change that raises the used
percentage past a notice threshold (a smaller plan) sends that notice like an upload would.

Errors are `Problem`s: the API answers them as they are, the CLI prints their detail.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from chairside.db.engine import Database, rowcount
from chairside.db.models import Contract, PlanChange, PlanRequest, utcnow
from chairside.domain.plans import (
    PLAN_STEP_HOURS,
    PlanError,
    onboarding_plan_hours,
    validate_plan_change,
    validate_plan_hours,
)
from chairside.errors import Problem
from chairside.feed import changes
from chairside.quota import usage


def _plan_problem(e: PlanError) -> Problem:
    return Problem(422, e.message, code="bad-plan")


def _locked_contract(s: Session, contract_id: uuid.UUID) -> Contract:
    contract = s.execute(
        select(Contract).where(Contract.id == contract_id).with_for_update().execution_options(populate_existing=True)
    ).scalar_one_or_none()
    if contract is None:
        raise Problem(404, f"There is no contract {contract_id}.", code="contract-not-found")
    return contract


def record_first_plan(s: Session, contract: Contract, *, actor: str = "", now: datetime | None = None) -> None:
    """The plan a new contract starts with, as the first entry of its history."""
    s.add(PlanChange(contract_id=contract.id, hours=contract.plan_hours, previous_hours=None,
                     effective_at=now or contract.created_at or utcnow(), reason="onboarding", actor=actor))


def apply_plan(
    s: Session,
    contract_id: uuid.UUID,
    new_hours: object,
    *,
    reason: str,
    actor: str = "",
    request_id: uuid.UUID | None = None,
    percents: Sequence[int] = usage.DEFAULT_NOTICE_PERCENTS,
    now: datetime | None = None,
) -> tuple[int, int]:
    """Set the plan now, checked against the stored hours; answer (previous, new) hours."""
    now = now or utcnow()
    contract = _locked_contract(s, contract_id)
    try:
        hours = validate_plan_change(new_hours, usage.hours(contract.stored_video_ms))
    except PlanError as e:
        raise _plan_problem(e) from None
    previous = contract.plan_hours
    contract.plan_hours = hours
    s.add(PlanChange(contract_id=contract_id, hours=hours, previous_hours=previous, effective_at=now,
                     reason=reason, request_id=request_id, actor=actor))
    s.flush()
    usage.record_crossings(s, contract_id, contract.stored_video_ms, previous, contract.stored_video_ms, hours,
                           percents, now=now)
    changes.contract_changed(s, contract_id)  # followers (relays) check the quota against the new plan
    return previous, hours


def set_plan(db: Database, contract_id: uuid.UUID, new_hours: object, *, actor: str = "operator",
             percents: Sequence[int] = usage.DEFAULT_NOTICE_PERCENTS) -> tuple[int, int]:
    """The operator sets the plan (`chairside admin contract set-plan`)."""
    with db.session() as s:
        return apply_plan(s, contract_id, new_hours, reason="operator", actor=actor, percents=percents)


def onboard_plan(db: Database, contract_id: uuid.UUID, *, actor: str = "operator",
                 percents: Sequence[int] = usage.DEFAULT_NOTICE_PERCENTS) -> tuple[int, int]:
    """Set the plan to the stored hours rounded up to the next 100 (at least 100), e.g. after an import."""
    with db.session() as s:
        contract = _locked_contract(s, contract_id)
        try:
            hours = onboarding_plan_hours(usage.hours(contract.stored_video_ms))
        except PlanError as e:
            raise _plan_problem(e) from None
        return apply_plan(s, contract_id, hours, reason="onboarding", actor=actor, percents=percents)


# --- requests from a contract admin -------------------------------------------------------------


def request_plan(
    db: Database, contract_id: uuid.UUID, new_hours: object, *, account_id: uuid.UUID | None, name: str = ""
) -> PlanRequest:
    """A contract admin asks for a larger plan (`hours` is the plan asked for: 100 more, or more).

    Refused: an invalid plan, one not larger than the current plan, one below the hours
    already stored (422), and a second request while one is waiting (409).
    """
    with db.session() as s:
        contract = _locked_contract(s, contract_id)
        try:
            hours = validate_plan_hours(new_hours)
            if hours <= contract.plan_hours:
                raise PlanError(
                    f"The plan is already {contract.plan_hours} hours. Ask for a larger plan: "
                    f"{contract.plan_hours + PLAN_STEP_HOURS} hours or more, in steps of {PLAN_STEP_HOURS}."
                )
            validate_plan_change(hours, usage.hours(contract.stored_video_ms))
        except PlanError as e:
            raise _plan_problem(e) from None
        waiting = s.scalar(
            select(PlanRequest).where(PlanRequest.contract_id == contract_id, PlanRequest.status == "pending")
        )
        if waiting is not None:
            raise Problem(
                409,
                f"A request for a {waiting.hours}-hour plan, made on {waiting.requested_at:%Y-%m-%d}, is still "
                "waiting for the operator. Wait for its answer before asking again.",
                code="plan-request-pending",
                pending_request_id=str(waiting.id),
            )
        request = PlanRequest(contract_id=contract_id, hours=hours, plan_hours_then=contract.plan_hours,
                              requested_by=account_id, requested_by_name=name[:200], status="pending")
        s.add(request)
        s.flush()
        return request


def decide(
    db: Database,
    request_id: uuid.UUID,
    *,
    approve: bool,
    actor: str = "operator",
    reason: str | None = None,
    percents: Sequence[int] = usage.DEFAULT_NOTICE_PERCENTS,
    now: datetime | None = None,
) -> PlanRequest:
    """The operator approves (the plan changes at once) or declines a waiting request, once."""
    now = now or utcnow()
    with db.session() as s:
        request = s.execute(
            select(PlanRequest).where(PlanRequest.id == request_id).with_for_update()
            .execution_options(populate_existing=True)
        ).scalar_one_or_none()
        if request is None:
            raise Problem(404, f"There is no plan request {request_id}.", code="plan-request-not-found")
        if request.status != "pending":
            when = f" on {request.decided_at:%Y-%m-%d %H:%M} UTC" if request.decided_at else ""
            raise Problem(409, f"Plan request {request_id} was already {request.status}{when}; it cannot be "
                          "decided again.", code="plan-request-decided")
        if approve:
            contract = _locked_contract(s, request.contract_id)
            if request.hours <= contract.plan_hours:
                raise Problem(409, f"The contract's plan is already {contract.plan_hours} hours (changed since "
                              f"the request for {request.hours} hours); decline this request instead.",
                              code="plan-request-outdated")
            apply_plan(s, request.contract_id, request.hours, reason="request", actor=actor, request_id=request.id,
                       percents=percents, now=now)
        done = s.execute(
            update(PlanRequest).where(PlanRequest.id == request_id, PlanRequest.status == "pending")
            .values(status="approved" if approve else "declined", decided_at=now, decided_by=actor,
                    reason=(reason or None) and reason[:500])
            .execution_options(synchronize_session=False)
        )
        if rowcount(done) != 1:  # cannot happen under the row lock
            raise Problem(409, f"Plan request {request_id} was decided meanwhile.", code="plan-request-decided")
        s.refresh(request)
        return request

