"""`GET /` — the live dashboard (SPEC §6): static files inside the package, no build step, no CDN.

`StaticFiles(packages=...)` serves them from wherever the package is installed (they ship in the wheel),
refuses paths outside its directory and answers 304 from ETag / Last-Modified. Both routes sit on a router
so the app guards them like any other (read scope; a browser passes its key as `?key=`). A page opened
with `?key=` gets that key on its asset URLs, and is sent with `Referrer-Policy: no-referrer` and
`Cache-Control: no-store` so the key does not travel further than this service.
"""

from __future__ import annotations

import html
from functools import cache
from importlib.resources import files
from urllib.parse import quote

from fastapi import APIRouter, Request
from starlette.responses import HTMLResponse, Response
from starlette.staticfiles import StaticFiles

STATIC_PACKAGE = ("services.api", "static")

router = APIRouter(include_in_schema=False)
_static = StaticFiles(packages=[STATIC_PACKAGE])


@cache
def _index() -> str:
    return (files(STATIC_PACKAGE[0]) / STATIC_PACKAGE[1] / "index.html").read_text(encoding="utf-8")


@router.get("/")
async def dashboard(request: Request) -> Response:
    key = request.query_params.get("key")
    if not key:
        return await _static.get_response("index.html", request.scope)
    suffix = html.escape(f"?key={quote(key, safe='')}")
    page = _index().replace('.css">', f'.css{suffix}">').replace('.js">', f'.js{suffix}">')
    return HTMLResponse(page, headers={"Referrer-Policy": "no-referrer", "Cache-Control": "no-store"})


@router.get("/static/{path:path}")
async def static(path: str, request: Request) -> Response:
    return await _static.get_response(path, request.scope)
