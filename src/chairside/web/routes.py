"""The browser viewer: one HTML page (at `/` and at deep links such as `/p/{patient_id}`) plus static ES
modules and CSS. No build step, and nothing is loaded from any other host (the page's CSP says so)."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, FastAPI, Query, Request
from fastapi.responses import HTMLResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.types import Scope

from chairside import __version__
from chairside.api.principal import allow, client_address
from chairside.auth.principal import Principal
from chairside.errors import Problem
from chairside.sharing import handouts, links

HERE = Path(__file__).parent
STATIC = HERE / "static"
templates = Jinja2Templates(directory=HERE / "templates")
router = APIRouter(include_in_schema=False)
JAPAN = timezone(timedelta(hours=9), "JST")  # dates on a share link's page, as the clinic and patient read them

CSP = "; ".join((
    "default-src 'self'",
    "img-src 'self' blob: data:",
    "media-src 'self' blob:",
    "script-src 'self'",
    "style-src 'self'",
    "connect-src 'self'",
    "font-src 'self'",
    "object-src 'none'",
    "base-uri 'none'",
    "form-action 'self'",
    "frame-ancestors 'none'",
))
PAGE_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-cache",
}


def modules() -> list[str]:
    """The ES modules, preloaded by the page so the browser fetches them in parallel."""
    return sorted(p.relative_to(STATIC).as_posix() for p in (STATIC / "js").rglob("*.js"))


def _page(request: Request) -> Response:
    return templates.TemplateResponse(request, "index.html", {"version": __version__, "modules": modules()},
                                      headers=PAGE_HEADERS)


@router.get("/", response_class=HTMLResponse, dependencies=[allow()])
def index(request: Request) -> Response:
    return _page(request)


@router.get("/p/{patient_id}", response_class=HTMLResponse, dependencies=[allow()])
def patient_page(request: Request, patient_id: str) -> Response:  # the page asks the API about the id
    return _page(request)


# A share link's page (sharing/links.py): no credentials, nothing but the chosen items; the token never leaves
# in a Referer, no search engine keeps it, and a withdrawn link stops showing at once (nothing cached).
SHARE_HEADERS = {**PAGE_HEADERS, "Referrer-Policy": "no-referrer", "Cache-Control": "no-store",
                 "X-Robots-Tag": "noindex, nofollow"}


@router.get("/s/{token}", response_class=HTMLResponse, dependencies=[allow()])
def share_page(request: Request, token: str) -> Response:
    """The patient's page: 404 alike for a wrong, expired or revoked link; every view audited."""
    ctx = request.app.state.ctx
    try:
        shared = links.resolve(ctx, token)
    except Problem:
        return templates.TemplateResponse(request, "share.html", {"shared": None, "detail": links.NOT_FOUND_DETAIL},
                                          status_code=404, headers=SHARE_HEADERS)
    links.record_view(ctx, shared, "share.view", address=client_address(request),
                      device=request.headers.get("user-agent", ""))
    base = f"/api/v1/shared/{token}/media"
    items = [{"kind": m.kind, "date": m.captured_at.astimezone(JAPAN).strftime("%Y-%m-%d %H:%M"),
              "src": f"{base}/{m.id}/content", "poster": f"{base}/{m.id}/thumbnail" if m.thumb_sha256 else "",
              "width": m.width or "", "height": m.height or ""} for m in shared.items]
    return templates.TemplateResponse(request, "share.html", {
        "shared": shared, "items": items, "clinic": shared.clinic_name,
        "expires": shared.link.expires_at.astimezone(JAPAN).strftime("%Y-%m-%d %H:%M")}, headers=SHARE_HEADERS)


@router.get("/handout", response_class=HTMLResponse)
def handout_page(request: Request, principal: Annotated[Principal, allow("admin", "viewer")],
                 m: Annotated[list[uuid.UUID], Query(min_length=1, max_length=4)]) -> Response:
    """A printable A4 handout (sharing/handouts.py): the clinic, the patient, today's date, the picture."""
    ctx = request.app.state.ctx
    subject = handouts.subject(ctx, principal, m)
    query = "&".join(f"m={i.id}" for i in subject.items)
    return templates.TemplateResponse(request, "handout.html", {
        "subject": subject, "image": f"/api/v1/handout.jpg?{query}",
        "today": datetime.now(JAPAN).strftime("%Y-%m-%d"),
        "dates": [i.captured_at.astimezone(JAPAN).strftime("%Y-%m-%d") for i in subject.items]},
        headers=PAGE_HEADERS)


class _Static(StaticFiles):
    """Static files that the browser revalidates (ETag) on each load, so an update is never half-applied."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        response.headers["Cache-Control"] = "no-cache"
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response


def install(app: FastAPI) -> None:
    app.include_router(router)
    app.mount("/static", _Static(directory=STATIC), name="static")
