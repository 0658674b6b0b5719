"""RFC 9457 problem details: every error a service returns is `application/problem+json`.

Handlers cover the service's own `Problem`s, FastAPI's validation errors (malformed JSON included),
Starlette's HTTP errors (404 for unknown routes, 405, ...) and, as a last resort, any unexpected
exception, which is logged with its traceback and answered with an opaque 500.

A service that answers customers hands its catalogue to `install_problem_handlers`: the `detail` of
each problem whose code has a text there (`problem.<code>`, or one of `PROBLEM_TEXTS` below) is then
that text in the request's locale (`request.state.locale` once the caller is known, else
Accept-Language, else zh-CN), filled with the problem's fields. The `detail` given in the code is the
developer's wording, kept for services without a catalogue; `title` stays English (RFC 9457: it names
the problem type).
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from shared.i18n import Catalogue, MissingText, resolve

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"
TYPE_BASE = "https://unbind.example/problems/"


class Problem(Exception):
    """An error the client can act on. `code` names the problem type (a stable, documented slug)."""

    def __init__(
        self,
        status: int,
        code: str,
        title: str,
        detail: str | None = None,
        *,
        headers: dict[str, str] | None = None,
        words: dict[str, Any] | None = None,
        **extra: Any,
    ):
        super().__init__(detail or title)
        self.status = status
        self.code = code
        self.title = title
        self.detail = detail
        self.headers = headers
        # Values the customer's text names beyond the fields of the body.
        self.words = words or {}
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
        responses[status] = {
            "description": description,
            "content": {PROBLEM_JSON: {"schema": PROBLEM_SCHEMA}},
        }
    return responses


# The problems every service may answer, in words for a customer (services with a catalogue only).
PROBLEM_TEXTS = Catalogue(
    {
        "problem.not-found": {
            "zh-CN": "没有找到相关记录，或您无权查看。",
            "en": "We could not find this, or it is not yours to see.",
        },
        "problem.validation-error": {
            "zh-CN": "提交的信息有误，请检查后重试。",
            "en": "Some of the details sent are not valid. Check them and try again.",
        },
        "problem.invalid-cursor": {
            "zh-CN": "列表已变化，请刷新后重试。",
            "en": "The list has changed. Refresh it and try again.",
        },
        "problem.unauthorized": {
            "zh-CN": "登录已失效，请重新登录。",
            "en": "Your session has ended. Please sign in again.",
        },
        "problem.forbidden": {"zh-CN": "您没有权限进行此操作。", "en": "You are not allowed to do this."},
        "problem.bad-request": {
            "zh-CN": "请求无法识别，请更新应用后重试。",
            "en": "We could not read this request. Update the app and try again.",
        },
        "problem.method-not-allowed": {
            "zh-CN": "请求无法识别，请更新应用后重试。",
            "en": "We could not read this request. Update the app and try again.",
        },
        "problem.not-acceptable": {
            "zh-CN": "请求无法识别，请更新应用后重试。",
            "en": "We could not read this request. Update the app and try again.",
        },
        "problem.unsupported-media-type": {
            "zh-CN": "请求无法识别，请更新应用后重试。",
            "en": "We could not read this request. Update the app and try again.",
        },
        "problem.payload-too-large": {
            "zh-CN": "提交的内容过长，请精简后重试。",
            "en": "What you sent is too long. Shorten it and try again.",
        },
        "problem.request-header-fields-too-large": {
            "zh-CN": "请求无法识别，请更新应用后重试。",
            "en": "We could not read this request. Update the app and try again.",
        },
        "problem.too-many-requests": {
            "zh-CN": "操作太频繁，请稍后再试。",
            "en": "Too many tries. Please wait a moment and try again.",
        },
        "problem.service-unavailable": {
            "zh-CN": "服务暂时繁忙，请稍后重试。",
            "en": "The service is busy right now. Please try again shortly.",
        },
        "problem.keys-unavailable": {
            "zh-CN": "服务暂时繁忙，请稍后重试。",
            "en": "The service is busy right now. Please try again shortly.",
        },
        "problem.internal-error": {
            "zh-CN": "系统开小差了，请稍后重试。",
            "en": "Something went wrong on our side. Please try again later.",
        },
        "problem.http-error": {
            "zh-CN": "请求未能完成，请稍后重试。",
            "en": "The request could not be completed. Please try again later.",
        },
    }
)


def _customer_detail(request: Request, code: str, values: dict[str, Any]) -> str | None:
    """The problem in words for the customer, from the app's catalogue; None when it has none for it."""
    catalogue: Catalogue | None = getattr(
        getattr(request.scope.get("app"), "state", None), "problem_texts", None
    )
    if catalogue is None:
        return None
    key = f"problem.{code}"
    texts = catalogue if key in catalogue else PROBLEM_TEXTS if key in PROBLEM_TEXTS else None
    if texts is None:
        return None
    locale = getattr(request.state, "locale", None) or resolve(request.headers.get("accept-language"), None)
    try:
        return texts.render(key, locale, **values)
    except MissingText:
        log.exception("problem text lacks a value; the developer's detail is answered", extra={"code": code})
        return None


def problem_response(
    request: Request,
    status: int,
    code: str,
    title: str,
    *,
    detail: str | None = None,
    headers: dict[str, str] | None = None,
    words: dict[str, Any] | None = None,
    **extra: Any,
) -> JSONResponse:
    body: dict[str, Any] = {
        "type": TYPE_BASE + code,
        "title": title,
        "status": status,
        "instance": request.url.path,
    }
    if detail := _customer_detail(request, code, {**extra, **(words or {})}) or detail:
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


def install_problem_handlers(app: FastAPI, texts: Catalogue | None = None) -> None:
    """`texts`: the service's catalogue, when it answers customers (see the module's docstring)."""
    app.state.problem_texts = texts

    @app.exception_handler(Problem)
    async def _problem(request: Request, exc: Problem) -> JSONResponse:
        return problem_response(
            request,
            exc.status,
            exc.code,
            exc.title,
            detail=exc.detail,
            headers=exc.headers,
            words=exc.words,
            **exc.extra,
        )

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {
                "location": list(error.get("loc", ())),
                "message": error.get("msg", ""),
                "type": error.get("type", ""),
            }
            for error in exc.errors()
        ]
        return problem_response(
            request,
            422,
            "validation-error",
            "The request is not valid",
            detail="See `errors` for each invalid field.",
            errors=errors,
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _HTTP_CODES.get(exc.status_code, "http-error")
        title = code.replace("-", " ").capitalize()
        detail = exc.detail if isinstance(exc.detail, str) else None
        return problem_response(
            request, exc.status_code, code, title, detail=detail, headers=getattr(exc, "headers", None)
        )

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        return unexpected_error(request, exc)


def unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error", extra={"path": request.url.path}, exc_info=exc)
    return problem_response(
        request, 500, "internal-error", "Internal error", detail="The error was logged; retry later."
    )
