"""Routes served in front of FastAPI's router, as plain ASGI handlers.

``POST /predict`` is the hot path: FastAPI's routing, dependency solving and request wrapping cost the
event loop a third of its time per request (README, Performance). ``FastPath`` sits between the request
middleware and FastAPI and hands the listed (method, path) pairs straight to their handlers; everything
else goes on to FastAPI. FastAPI still documents those routes (their handlers are registered there too).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from service.middleware import ROUTE_LABEL

Handler = Callable[[Request], Awaitable[Response]]
ErrorMapper = Callable[[Request, Exception], Response]


class FastPath:
    def __init__(self, app: ASGIApp, routes: dict[tuple[str, str], Handler], on_error: ErrorMapper) -> None:
        self.app = app
        self.routes = routes
        self.on_error = on_error

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        handler = self.routes.get((scope["method"], scope["path"])) if scope["type"] == "http" else None
        if handler is None:
            await self.app(scope, receive, send)
            return
        scope["state"][ROUTE_LABEL] = scope["path"]
        request = Request(scope, receive)
        try:
            response = await handler(request)
        except Exception as exc:
            response = self.on_error(request, exc)
        await response(scope, receive, send)
