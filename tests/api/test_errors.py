from __future__ import annotations

import httpx
import pytest

from tests.conftest import LiveServer
from tests.factories import Tenant


@pytest.mark.parametrize(("method", "path", "status"), [
    ("GET", "/no/such/page", 404),
    ("PUT", "/api/v1/patients", 405),
    ("GET", "/api/v1/patients/not-a-uuid", 422),
])
def test_framework_errors_are_problem_json_with_a_human_detail(
    server: LiveServer, tenant: Tenant, method: str, path: str, status: int
) -> None:
    r = httpx.request(method, server.url + path, headers={"Authorization": f"Bearer {tenant.token}"})
    assert r.status_code == status
    assert r.headers["content-type"] == "application/problem+json"
    body = r.json()
    assert body["status"] == status and len(body["detail"]) > 20 and body["title"]


@pytest.mark.parametrize("auth", [None, "Bearer nonsense", "Basic dXNlcjpwYXNz"])
def test_missing_or_bad_tokens_get_401_problem(server: LiveServer, auth: str | None) -> None:
    headers = {"Authorization": auth} if auth else {}
    r = httpx.get(f"{server.url}/api/v1/patients", headers=headers)
    assert r.status_code == 401
    assert r.headers["www-authenticate"] == "Bearer"
    assert "Bearer" in r.json()["detail"]


def test_a_revoked_station_is_told_so(server: LiveServer, tenant: Tenant, ctx: object) -> None:
    from sqlalchemy import update

    from chairside.db.models import Station, utcnow
    with ctx.db.session() as s:  # type: ignore[attr-defined]
        s.execute(update(Station).values(revoked_at=utcnow()))
    r = httpx.get(f"{server.url}/api/v1/patients", headers={"Authorization": f"Bearer {tenant.token}"})
    assert r.status_code == 401 and "revoked" in r.json()["detail"]


def test_openapi_is_served_and_lists_every_route(server: LiveServer) -> None:
    doc = httpx.get(f"{server.url}/openapi.json").json()
    paths = doc["paths"]
    for path in ("/api/v1/patients", "/api/v1/patients/{patient_id}", "/api/v1/patients/{patient_id}/media",
                 "/api/v1/media/{media_id}", "/api/v1/media/{media_id}/content",
                 "/api/v1/media/{media_id}/thumbnail", "/api/v1/uploads/", "/api/v1/uploads/{upload_id}"):
        assert path in paths, path
    assert {"post", "head", "patch", "delete"} <= set(paths["/api/v1/uploads/"]) | set(
        paths["/api/v1/uploads/{upload_id}"])


def test_every_route_declares_its_roles(server: LiveServer) -> None:
    from fastapi.routing import APIRoute

    from chairside.api.principal import route_roles
    app = server.server.config.app
    missing = []
    for route in app.routes:  # type: ignore[attr-defined]
        if isinstance(route, APIRoute) and route.path not in ("/openapi.json", "/docs", "/docs/oauth2-redirect",
                                                              "/redoc"):
            calls = [d.call for d in route.dependant.dependencies]
            if route_roles(calls) is None:
                missing.append(f"{sorted(route.methods)} {route.path}")
    assert missing == []
