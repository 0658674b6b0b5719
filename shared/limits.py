"""Request size limits, before anything is parsed: every service and the dashboard install them
through `shared.app.build_http_app`.

Headers over `MAX_HEADER_BYTES` in total are refused with 431. A body announced (Content-Length)
over the limit is refused with 413 before a byte of it is read; a body without a length (chunked)
is counted as it arrives and refused with 413 at the first chunk past the limit, the rest never
read. Every refusal is problem+json.
"""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.problems import problem_response

# As most servers and proxies (nginx's large_client_header_buffers, Node's default): a name, ": ",
# the value and CRLF per header line.
MAX_HEADER_BYTES = 16 * 1024


def too_large(limit: int) -> str:
    return f"The request body is larger than {limit} bytes."


class SizeLimitMiddleware:
    """Refuses requests whose headers or body are over the limits (see the module)."""

    def __init__(self, app: ASGIApp, max_body_bytes: int, max_header_bytes: int = MAX_HEADER_BYTES):
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.max_header_bytes = max_header_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = scope.get("headers") or []
        if sum(len(name) + len(value) + 4 for name, value in headers) > self.max_header_bytes:
            detail = f"The request headers are larger than {self.max_header_bytes} bytes in total."
            await problem_response(
                Request(scope),
                431,
                "request-header-fields-too-large",
                "Request header fields too large",
                detail=detail,
            )(scope, receive, send)
            return
        lengths = [value for name, value in headers if name == b"content-length"]
        if lengths:
            if len(lengths) > 1 or not lengths[0].isdigit():
                await problem_response(
                    Request(scope),
                    400,
                    "bad-request",
                    "Bad request",
                    detail="Content-Length must be one decimal number.",
                )(scope, receive, send)
                return
            if int(lengths[0]) > self.max_body_bytes:
                too_big = too_large(self.max_body_bytes)
                await problem_response(
                    Request(scope),
                    413,
                    "payload-too-large",
                    "Payload too large",
                    detail=too_big,
                    max_bytes=self.max_body_bytes,
                )(scope, receive, send)
                return
        await self.app(scope, self._counted(receive), send)

    def _counted(self, receive: Receive) -> Receive:
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    # Raised inside the app, where the body is being read: the app's HTTP error
                    # handler answers 413 problem+json, before any of it is parsed.
                    raise HTTPException(413, too_large(self.max_body_bytes))
            return message

        return counted
