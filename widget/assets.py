"""Files the npm build puts in widget/static (the widget bundle, Swagger UI's), and the API docs built on them.

The docs page loads Swagger UI from this server, never from a CDN, and its CSP allows no other source.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, HTTPException
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, JSONResponse, Response

STATIC = Path(__file__).resolve().parent / "static"
# Swagger UI's start-up script is inline (FastAPI's page, no user content); everything else comes from here.
DOCS_CSP = (
    "default-src 'none'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)
SWAGGER_FILES = {"swagger-ui-bundle.js": "text/javascript", "swagger-ui.css": "text/css"}


def built_file(name: str, media_type: str) -> Response:
    path = STATIC / name
    if not path.is_file():
        return JSONResponse({"detail": f"{name} is not built: run scripts/setup.sh"}, status_code=503)
    return FileResponse(path, media_type=media_type, headers={"Cache-Control": "public, max-age=300"})


def install_docs(app: FastAPI) -> None:
    """/docs: Swagger UI over the app's /openapi.json."""

    @app.get("/docs", include_in_schema=False)
    def docs() -> Response:
        page = get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title=f"{app.title} API",
            swagger_js_url="/docs/swagger-ui-bundle.js",
            swagger_css_url="/docs/swagger-ui.css",
            swagger_favicon_url="data:,",
            swagger_ui_parameters={"validatorUrl": None},  # no badge fetched from validator.swagger.io
        )
        page.headers["Content-Security-Policy"] = DOCS_CSP
        return page

    @app.get("/docs/{name}", include_in_schema=False)
    def swagger_file(name: str) -> Response:
        if name not in SWAGGER_FILES:
            raise HTTPException(404, "not found")
        return built_file(name, SWAGGER_FILES[name])
