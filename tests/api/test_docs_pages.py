"""/docs and /redoc refer only to files the service itself serves (no CDN), and those files answer.

The browser half (the pages render with the outside network blocked) is tests/e2e/test_docs_offline.py.
"""

import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.routes.docs import ASSET_FILES
from tests.api.conftest import make_settings

PAGES = ["/docs", "/redoc"]
TYPES = {".js": "text/javascript", ".css": "text/css", ".png": "image/png", ".json": "application/json"}


class References(HTMLParser):
    """Every URL a page loads: script src, link href, and the document Swagger UI (``url:``) or ReDoc (``spec-url``) reads."""

    def __init__(self):
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag, attrs):
        for name, value in attrs:
            if value and (tag, name) in {("script", "src"), ("link", "href"), ("img", "src"), ("redoc", "spec-url")}:
                self.urls.append(value)

    def handle_data(self, data):
        self.urls += re.findall(r"\burl:\s*'([^']+)'", data)


def references(html: str) -> list[str]:
    parser = References()
    parser.feed(html)
    return parser.urls


@pytest.fixture(scope="module")
def keyed_client(tmp_path_factory):
    """Keys required (as in production): the docs are public like /openapi.json, and must not need one."""
    settings = make_settings(open_access=False, admin_key="docs-test-admin-key-0123456789",
                             storage_dir=str(tmp_path_factory.mktemp("storage")))
    with TestClient(create_app(settings)) as client:
        yield client


@pytest.mark.parametrize("page", PAGES)
def test_page_refers_only_to_local_urls(keyed_client, page):
    answer = keyed_client.get(page)
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/html")
    assert not re.search(r"https?://|//[a-z0-9.-]+\.[a-z]", answer.text, re.IGNORECASE), answer.text  # no other host, not even scheme-relative
    urls = references(answer.text)
    assert "/openapi.json" in urls
    assert len(urls) >= 3, urls  # the document, the script, the favicon (and the stylesheet for Swagger UI)
    assert all(url.startswith("/") for url in urls), urls


@pytest.mark.parametrize("page", PAGES)
def test_every_referenced_url_answers_with_its_content_type(keyed_client, page):
    for url in references(keyed_client.get(page).text):
        answer = keyed_client.get(url)
        assert answer.status_code == 200, (url, answer.status_code)
        assert answer.headers["content-type"].startswith(TYPES[Path(url).suffix]), (url, answer.headers["content-type"])
        assert len(answer.content) > 500, url


def test_assets_are_the_packaged_bundles():
    client = TestClient(create_app(make_settings()))
    for name, needle in {"swagger-ui-bundle.js": b"SwaggerUIBundle", "redoc.standalone.js": b"Redoc",
                         "swagger-ui.css": b".swagger-ui"}.items():
        served = client.get(f"/docs/assets/{name}").content
        assert served == (ASSET_FILES / name).read_bytes() and needle in served, name
    assert client.get("/docs/assets/nothing.js").status_code == 404


def test_swagger_ui_fetches_no_validator_badge(client):
    assert '"validatorUrl": null' in client.get("/docs").text


def test_pages_are_not_in_the_openapi_document(client):
    paths = client.get("/openapi.json").json()["paths"]
    assert not [path for path in paths if path.startswith(("/docs", "/redoc"))]


def test_oauth2_redirect_page_is_served_without_assets(client):
    answer = client.get("/docs/oauth2-redirect")
    assert answer.status_code == 200 and not re.search(r"<script[^>]+src=|https?://", answer.text)


@pytest.mark.parametrize("page", PAGES)
def test_page_lets_the_browser_load_from_the_service_only(client, page):
    """The policy also stops what a bundle asks for by itself (ReDoc's logo from its vendor's CDN)."""
    policy = dict(part.strip().split(" ", 1) for part in client.get(page).headers["content-security-policy"].split(";"))
    assert policy["default-src"] == "'self'" and policy["img-src"] == "'self' data:" and policy["connect-src"] == "'self'"
    assert not re.search(r"https?:|\*", " ".join(policy.values()))
