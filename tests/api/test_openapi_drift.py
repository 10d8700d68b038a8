"""The committed OpenAPI document matches the app."""

from api.app import create_app
from api.export_openapi import DOCUMENT
from api.openapi import openapi_text
from api.settings import Settings


def test_committed_openapi_document_is_up_to_date():
    current = openapi_text(create_app(Settings()))
    committed = DOCUMENT.read_text() if DOCUMENT.exists() else ""
    assert committed == current, (
        f"{DOCUMENT} is stale: regenerate it with `python -m api.export_openapi` and commit it"
    )


def test_document_is_stable_across_apps():
    assert openapi_text(create_app(Settings())) == openapi_text(create_app(Settings()))
