"""The committed OpenAPI document matches the app (built in a fresh process: tests may register extra methods in this one)."""

import subprocess
import sys

from api.app import create_app
from api.export_openapi import DOCUMENT
from api.openapi import openapi_text
from api.settings import Settings
from tests.e2e.servers import ROOT


def test_committed_openapi_document_is_up_to_date():
    check = subprocess.run([sys.executable, "-m", "api.export_openapi", "--check"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert check.returncode == 0, f"{DOCUMENT} is stale: regenerate it with `python -m api.export_openapi` and commit it\n{check.stdout}{check.stderr}"


def test_document_is_stable_across_apps():
    assert openapi_text(create_app(Settings())) == openapi_text(create_app(Settings()))
