"""`/docs` and `/redoc` served by the intake itself, with no internet: FastAPI's own pages point at a CDN, so
they were blank offline. The Swagger UI and ReDoc assets come from the fastapi-offline package (MIT; Swagger UI
and ReDoc themselves are Apache-2.0 and MIT), served under /docs/assets."""

from __future__ import annotations

from importlib.resources import files

from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

ASSETS = "/docs/assets"


def add_offline_docs(app: FastAPI, *, title: str, openapi_url: str = "/openapi.json") -> None:
    """Serve Swagger UI at /docs and ReDoc at /redoc from assets in this process; FastAPI's CDN pages must be
    off (`docs_url=None, redoc_url=None`)."""
    app.mount(ASSETS, StaticFiles(directory=str(files("fastapi_offline") / "static")), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url=openapi_url, title=f"{title}: API",
                                   swagger_js_url=f"{ASSETS}/swagger-ui-bundle.js",
                                   swagger_css_url=f"{ASSETS}/swagger-ui.css",
                                   swagger_favicon_url=f"{ASSETS}/favicon.png")

    @app.get("/redoc", include_in_schema=False)
    async def redoc() -> HTMLResponse:
        return get_redoc_html(openapi_url=openapi_url, title=f"{title}: API",
                              redoc_js_url=f"{ASSETS}/redoc.standalone.js",
                              redoc_favicon_url=f"{ASSETS}/favicon.png", with_google_fonts=False)
