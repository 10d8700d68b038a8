"""The interactive API docs, ``/docs`` (Swagger UI) and ``/redoc`` (ReDoc), with every file served by the service.

FastAPI's own pages load Swagger UI and ReDoc from a CDN, so they stay blank on a
machine without internet. These are the same pages (FastAPI's
``get_swagger_ui_html`` / ``get_redoc_html``), pointed at the Swagger UI and
ReDoc bundles that the ``fastapi-offline`` package ships (kept in step with the
upstream releases; only its files are used), mounted at ``/docs/assets``. No
Google fonts, no favicon from elsewhere, no validator badge; and a
Content-Security-Policy lets the browser load nothing from another host, which
also stops the one request the bundles make on their own (ReDoc 2 always asks
cdn.redoc.ly for the logo in its "API docs by Redocly" link; it hides the
image when that fails).
"""

from importlib.resources import files
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

DOCS, REDOC, OAUTH2_REDIRECT = "/docs", "/redoc", "/docs/oauth2-redirect"
ASSETS = "/docs/assets"
ASSET_FILES = Path(str(files("fastapi_offline") / "static"))
SWAGGER_JS, SWAGGER_CSS, REDOC_JS, FAVICON = "swagger-ui-bundle.js", "swagger-ui.css", "redoc.standalone.js", "favicon.png"

# 'unsafe-inline': FastAPI's page starts Swagger UI from an inline script, and both UIs set inline styles
POLICY = {"Content-Security-Policy": "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
          "img-src 'self' data:; worker-src 'self' blob:; connect-src 'self'; object-src 'none'; base-uri 'none'"}

router = APIRouter(include_in_schema=False)


def _urls(request: Request) -> tuple[str, str]:
    """The document's URL and the assets' URL prefix, behind whatever ``root_path`` the app is served under."""
    root = request.scope.get("root_path", "")
    return root + request.app.openapi_url, root + ASSETS


@router.get(DOCS)
def swagger_ui(request: Request) -> HTMLResponse:
    document, assets = _urls(request)
    page = get_swagger_ui_html(
        openapi_url=document,
        title=f"{request.app.title} - Swagger UI",
        swagger_js_url=f"{assets}/{SWAGGER_JS}",
        swagger_css_url=f"{assets}/{SWAGGER_CSS}",
        swagger_favicon_url=f"{assets}/{FAVICON}",
        oauth2_redirect_url=OAUTH2_REDIRECT,
        swagger_ui_parameters={"validatorUrl": None},  # no badge fetched from validator.swagger.io
    )
    page.headers.update(POLICY)
    return page


@router.get(OAUTH2_REDIRECT)
def swagger_ui_oauth2_redirect() -> HTMLResponse:
    return get_swagger_ui_oauth2_redirect_html()


@router.get(REDOC)
def redoc(request: Request) -> HTMLResponse:
    document, assets = _urls(request)
    page = get_redoc_html(
        openapi_url=document,
        title=f"{request.app.title} - ReDoc",
        redoc_js_url=f"{assets}/{REDOC_JS}",
        redoc_favicon_url=f"{assets}/{FAVICON}",
        with_google_fonts=False,
    )
    page.headers.update(POLICY)
    return page


def docs_assets() -> StaticFiles:
    """The Swagger UI and ReDoc bundles, as files of the installed ``fastapi-offline`` package."""
    return StaticFiles(directory=ASSET_FILES)
