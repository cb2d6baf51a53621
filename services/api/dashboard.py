"""`GET /` — the live dashboard (SPEC §6): static files inside the package, no build step, no CDN.

`StaticFiles(packages=...)` serves them from wherever the package is installed (they ship in the wheel),
refuses paths outside its directory and answers 304 from ETag / Last-Modified.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from starlette.responses import Response
from starlette.staticfiles import StaticFiles

STATIC_PACKAGE = ("services.api", "static")


def install_dashboard(app: FastAPI) -> None:
    """Serve the page at `/` and its assets under `/static/`."""
    static = StaticFiles(packages=[STATIC_PACKAGE])
    app.mount("/static", static, name="static")

    @app.get("/", include_in_schema=False)
    async def dashboard(request: Request) -> Response:
        return await static.get_response("index.html", request.scope)
