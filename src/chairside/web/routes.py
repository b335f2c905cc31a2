"""The browser viewer: one HTML page (at `/` and at deep links such as `/p/{patient_id}`) plus static ES
modules and CSS. No build step, and nothing is loaded from any other host (the page's CSP says so)."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import HTMLResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.types import Scope

from chairside import __version__
from chairside.api.principal import allow

HERE = Path(__file__).parent
STATIC = HERE / "static"
templates = Jinja2Templates(directory=HERE / "templates")
router = APIRouter(include_in_schema=False)

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
