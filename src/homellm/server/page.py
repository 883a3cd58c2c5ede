"""The chat page at `/` and its static files, served with a Content-Security-Policy that allows
only this server's own scripts and styles, so no script in model output can ever run.

`/` is also where Ollama's clients check that a server runs (`HEAD /`, or `GET /` expecting
"Ollama is running"): a browser asks for HTML and gets the page; anything else gets that line.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import FileResponse, PlainTextResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

STATIC = Path(__file__).parent / "static"
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                               "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; "
                               "form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}
# What Ollama answers at `/` (server/routes.go), and what its clients check for.
HEALTH_TEXT = "Ollama is running"

router = APIRouter()


@router.api_route("/", methods=["GET", "HEAD"], include_in_schema=False)
async def page(request: Request) -> Response:
    """The chat page for a browser (it accepts text/html); Ollama's health line for everyone else."""
    # The answer depends on Accept, so caches must keep the two apart.
    headers = {**PAGE_HEADERS, "Vary": "Accept"}
    if "text/html" in request.headers.get("accept", "").lower():
        return FileResponse(STATIC / "index.html", media_type="text/html", headers=headers)
    return PlainTextResponse(HEALTH_TEXT, headers=headers)


class _Headers:
    """Adds the page's headers to every static file."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def with_headers(message: dict) -> None:
            if message["type"] == "http.response.start":
                extra = [(k.lower().encode(), v.encode()) for k, v in PAGE_HEADERS.items()]
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        await self.app(scope, receive, with_headers)


def install(app: FastAPI) -> None:
    """Serve `/` and `/static/...`."""
    app.include_router(router)
    app.mount("/static", _Headers(StaticFiles(directory=STATIC)), name="static")
