"""RFC 9457 problem details: every error a service returns is `application/problem+json`.

Handlers cover the service's own `Problem`s, FastAPI's validation errors (malformed JSON included),
Starlette's HTTP errors (404 for unknown routes, 405, ...) and, as a last resort, any unexpected
exception, which is logged with its traceback and answered with an opaque 500.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"
TYPE_BASE = "https://unbind.example/problems/"


class Problem(Exception):
    """An error the client can act on. `code` names the problem type (a stable, documented slug)."""

    def __init__(self, status: int, code: str, title: str, detail: str | None = None, *, headers: dict[str, str] | None = None, **extra: Any):
        super().__init__(detail or title)
        self.status = status
        self.code = code
        self.title = title
        self.detail = detail
        self.headers = headers
        self.extra = extra


def not_found(what: str) -> Problem:
    return Problem(404, "not-found", "Not found", f"{what} does not exist or is not yours")


def conflict(code: str, detail: str, **extra: Any) -> Problem:
    return Problem(409, code, "Conflict with the current state", detail, **extra)


# What every error body holds, as each route documents it (`responses=problem_responses(...)`).
PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["type", "title", "status"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "instance": {"type": "string"},
    },
}
_DESCRIPTIONS = {
    400: "The body cannot be read as JSON (not UTF-8)",
    401: "No valid bearer token",
    403: "The token lacks the role this endpoint needs",
    404: "Does not exist, or is not yours",
    409: "Conflicts with the current state",
    422: "The request is not valid",
    429: "Too many requests: see Retry-After",
    503: "A dependency did not answer; retry",
}


def problem_responses(*statuses: int | tuple[int, str]) -> dict[int | str, dict[str, Any]]:
    """`responses=` for a router or route: each status (or (status, description)) documented as
    problem+json, which also replaces FastAPI's default application/json 422."""
    responses: dict[int | str, dict[str, Any]] = {}
    for entry in statuses:
        status, description = entry if isinstance(entry, tuple) else (entry, _DESCRIPTIONS[entry])
        responses[status] = {"description": description, "content": {PROBLEM_JSON: {"schema": PROBLEM_SCHEMA}}}
    return responses


def problem_response(request: Request, status: int, code: str, title: str, detail: str | None = None, headers: dict[str, str] | None = None, **extra: Any) -> JSONResponse:
    body: dict[str, Any] = {"type": TYPE_BASE + code, "title": title, "status": status, "instance": request.url.path}
    if detail:
        body["detail"] = detail
    body.update(extra)
    return JSONResponse(jsonable_encoder(body), status_code=status, media_type=PROBLEM_JSON, headers=headers)


_HTTP_CODES = {
    400: "bad-request",
    401: "unauthorized",
    403: "forbidden",
    404: "not-found",
    405: "method-not-allowed",
    406: "not-acceptable",
    413: "payload-too-large",
    415: "unsupported-media-type",
    429: "too-many-requests",
}


def install_problem_handlers(app: FastAPI) -> None:
    @app.exception_handler(Problem)
    async def _problem(request: Request, exc: Problem) -> JSONResponse:
        return problem_response(request, exc.status, exc.code, exc.title, exc.detail, exc.headers, **exc.extra)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [{"location": list(error.get("loc", ())), "message": error.get("msg", ""), "type": error.get("type", "")} for error in exc.errors()]
        return problem_response(request, 422, "validation-error", "The request is not valid", "See `errors` for each invalid field.", errors=errors)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _HTTP_CODES.get(exc.status_code, "http-error")
        title = code.replace("-", " ").capitalize()
        detail = exc.detail if isinstance(exc.detail, str) else None
        return problem_response(request, exc.status_code, code, title, detail, getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        return unexpected_error(request, exc)


def unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error", extra={"path": request.url.path}, exc_info=exc)
    return problem_response(request, 500, "internal-error", "Internal error", "The error was logged; retry later.")
