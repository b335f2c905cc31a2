"""The OpenAPI document, made to tell the truth about errors (tests/hostile/test_schema.py proves it with
schemathesis, as a station and as a signed-in viewer).

FastAPI describes only the happy path and a 422 as `application/json`. Every error here is RFC 9457
problem+json (api/problems.py), so each operation's error responses are rewritten to that type and
completed with the statuses it can give:

- every operation: 400 (a malformed request), 408/413/414/431 (the price list, api/limits.py), 422 (input);
- every operation: 401 (public ones check credentials of their own); those that need a credential: 403;
- every operation with an id in its path: 404 (also for an id out of the caller's sight);
- the statuses each route's service raises (`EXTRA`, below);
- the tus routes declare `Tus-Resumable: 1.0.0` as the required header it is (so generated requests reach
  them), and their protocol statuses.

405 answers name every method the path allows (`allowed_methods`, used by api/problems.py).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute
from pydantic import BaseModel
from starlette.types import Scope

from chairside.api.principal import route_roles
from chairside.errors import PROBLEM_JSON

PROBLEM_SCHEMA: dict[str, Any] = {
    "title": "Problem",
    "description": "RFC 9457 problem details; `detail` is a message a clinic's staff can act on.",
    "type": "object",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "instance": {"type": "string"},
    },
    "additionalProperties": True,
}

_DESCRIPTIONS = {
    400: "Malformed request", 401: "Not signed in", 403: "Not allowed", 404: "Not found", 405: "Method not allowed",
    408: "The body did not arrive in time", 409: "Conflict", 410: "Gone", 412: "Precondition failed",
    413: "Too large", 414: "Address too long", 415: "Unsupported media type", 416: "Range not satisfiable",
    422: "Invalid input", 423: "Busy", 429: "Too many attempts", 431: "Headers too large",
    460: "Checksum mismatch", 503: "Unavailable", 507: "Storage full",
}
ALWAYS = (400, 408, 413, 414, 422, 431)
TUS = (404, 409, 410, 412, 415, 423, 460, 507)

# Statuses a route's service raises beyond the general ones: (method, path) → statuses. A path prefix ending
# in "*" covers every path under it.
EXTRA: dict[tuple[str, str], tuple[int, ...]] = {
    ("POST", "/api/v1/sessions"): (401, 409, 429),
    ("POST", "/api/v1/stations/enroll"): (401, 409, 410),
    ("POST", "/api/v1/patients"): (409,),
    ("PATCH", "/api/v1/patients/{patient_id}"): (409,),
    ("POST", "/api/v1/accounts"): (409,),
    ("PUT", "/api/v1/annotations/{annotation_id}"): (409,),
    ("POST", "/api/v1/media/{media_id}/annotations"): (409,),
    ("POST", "/api/v1/media/{media_id}/purge"): (409,),
    ("GET", "/api/v1/media/{media_id}/content"): (416,),
    ("GET", "/api/v1/media/{media_id}/display"): (409,),
    ("GET", "/api/v1/relay/status"): (404,),
    ("POST", "/api/v1/relay/ops"): (409,),
    ("POST", "/api/v1/plan-requests"): (409,),
    ("GET", "/api/v1/exports/zip"): (404,),
    ("POST", "/api/v1/exports/zip"): (404,),
    ("POST", "/api/v1/patients/{patient_id}/merge"): (409,),
    ("POST", "/api/v1/patients/{patient_id}/keep-apart"): (409,),
    ("POST", "/api/v1/accounts/{account_id}/disable"): (409,),
    ("PUT", "/api/v1/clinics/{clinic_id}/tooth-notation"): (409,),
}


# Request bodies checked by the route itself (off the event loop) rather than by FastAPI: name → model.
_BODIES: dict[str, type[BaseModel]] = {}


def body_doc(model: type[BaseModel]) -> dict[str, Any]:
    """`openapi_extra` for a route that reads and checks its JSON body itself: the document still shows it."""
    _BODIES[model.__name__] = model
    return {"requestBody": {"required": True, "content": {"application/json": {
        "schema": {"$ref": f"#/components/schemas/{model.__name__}"}}}}}


def _add_bodies(components: dict[str, Any]) -> None:
    for name, model in _BODIES.items():
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        for inner, definition in schema.pop("$defs", {}).items():
            components.setdefault(inner, definition)
        components.setdefault(name, schema)


def _problem(status: int) -> dict[str, Any]:
    return {"description": _DESCRIPTIONS.get(status, "Error"),
            "content": {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}}}


def _statuses(method: str, path: str, operation: dict[str, Any], public: bool) -> set[int]:
    wanted = set(ALWAYS) | {401}  # a public route may check a credential of its own (sign-in, enrollment)
    if not public:
        wanted.add(403)
    if "{" in path:
        wanted.add(404)
    if path.startswith("/api/v1/uploads"):
        wanted |= set(TUS)
    wanted |= set(EXTRA.get((method, path), ()))
    wanted |= {int(code) for code in operation.get("responses", {}) if code.isdigit() and int(code) >= 400}
    return wanted


def truthful(schema: dict[str, Any], routes: list[Any]) -> dict[str, Any]:
    """Rewrite the document's error responses as described above (in place; answers it)."""
    public = {(method, route.path) for route in leaf_routes(routes) if isinstance(route, APIRoute)
              for method in (route.methods or ())
              if route_roles([d.call for d in route.dependant.dependencies if d.call is not None]) == ()}
    schema.setdefault("components", {}).setdefault("schemas", {})["Problem"] = PROBLEM_SCHEMA
    _add_bodies(schema["components"]["schemas"])
    for name in ("HTTPValidationError", "ValidationError"):
        schema["components"]["schemas"].pop(name, None)
    for path, operations in schema.get("paths", {}).items():
        for method, operation in operations.items():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            verb = method.upper()
            responses = operation["responses"]
            for status in _statuses(verb, path, operation, (verb, path) in public):
                responses[str(status)] = _problem(status)
            if path.startswith("/api/v1/uploads"):
                _tus_header(operation)
    return schema


def _tus_header(operation: dict[str, Any]) -> None:
    for parameter in operation.get("parameters", []):
        if parameter.get("in") == "header" and parameter.get("name", "").lower() == "tus-resumable":
            parameter["required"] = True
            parameter["schema"] = {"type": "string", "enum": ["1.0.0"]}
            parameter["description"] = "The tus protocol version: always 1.0.0."


def install(app: FastAPI) -> None:
    """Serve the truthful document at /openapi.json (made once, on first ask)."""
    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, summary=app.summary,
                                 description=app.description, routes=app.routes)
            app.openapi_schema = truthful(schema, list(app.routes))
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def leaf_routes(routes: Iterable[Any]) -> Iterator[Any]:
    """The routes themselves, through included routers (FastAPI keeps an included router as one entry)."""
    for route in routes:
        inner = getattr(getattr(route, "original_router", None), "routes", None)
        if inner is not None:
            yield from leaf_routes(inner)
        else:
            yield route


def allowed_methods(app: Any, scope: Scope) -> str:
    """Every method some route of this path admits (a 405's `Allow`): Starlette names only the first route's."""
    methods: set[str] = set()
    path = scope["path"]
    for route in leaf_routes(getattr(app, "routes", [])):
        regex = getattr(route, "path_regex", None)
        if regex is not None and regex.match(path) and getattr(route, "methods", None):
            methods |= set(route.methods)
    if "GET" in methods:
        methods.add("HEAD")
    return ", ".join(sorted(methods))
