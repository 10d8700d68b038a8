"""/docs and /redoc render in a real headless Chromium that cannot reach any host but the service.

The browser's network to the outside is cut two ways: every request goes through a
proxy port that refuses connections (a socket bound and never listening; loopback
bypasses it), and every host name but 127.0.0.1 resolves to nothing. The first tests
show the cut works: a CDN URL fails to load, and FastAPI's stock /docs (scripts from
the CDN) stays blank. Then ConvLens's pages render from the service's own files, and
the browser's DevTools log shows that nothing left for another host: Swagger UI asks
for nothing outside, and the one thing ReDoc asks for on its own (its logo, from
cdn.redoc.ly) is stopped by the page's Content-Security-Policy before the network.
"""

import json
import os
import shutil
import socket
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html

from api.settings import Settings
from tests.e2e.servers import LiveAPI

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not (shutil.which("chromium") and shutil.which("chromedriver")), reason="needs Debian's chromium and chromedriver"),
]

CDN_SWAGGER_JS = get_swagger_ui_html.__kwdefaults__["swagger_js_url"]  # what FastAPI's stock page loads
OUTSIDE = [CDN_SWAGGER_JS, "http://1.1.1.1/"]  # a CDN by name, and a host by address (no name to resolve)


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    settings = Settings(open_access=True, device="cpu", builtin_samples=False, inline_threads=1,
                        storage_dir=str(tmp_path_factory.mktemp("storage")))
    from api.app import create_app

    api = LiveAPI(create_app(settings)).start()
    yield api.url
    api.stop()


@pytest.fixture(scope="module")
def stock_service():
    """FastAPI's own docs pages, as ConvLens had them: scripts and styles from a CDN."""
    api = LiveAPI(FastAPI(title="stock")).start()
    yield api.url
    api.stop()


@pytest.fixture(scope="module")
def dead_proxy():
    """A loopback port that refuses every connection: bound (so nothing else takes it), never listening."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


@pytest.fixture(scope="module")
def offline_browser(tmp_path_factory, dead_proxy):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--window-size=1400,1000",
                 f"--proxy-server=http://127.0.0.1:{dead_proxy}", "--proxy-bypass-list=127.0.0.1;localhost",
                 "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
                 f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    driver.set_page_load_timeout(60)
    driver.set_script_timeout(30)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory) -> Path:
    folder = Path(os.environ.get("CONVLENS_TEST_ARTIFACTS") or tmp_path_factory.mktemp("docs-screenshots"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def wait(browser, condition, timeout=90):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(browser, timeout, poll_frequency=0.1).until(condition)


class Traffic:
    """What the page asked for since the last look (Chrome's DevTools and console logs; reading them empties them)."""

    def __init__(self, browser):
        events = [json.loads(entry["message"])["message"] for entry in browser.get_log("performance")]
        asked = {event["params"]["requestId"]: event["params"]["request"]["url"]
                 for event in events if event["method"] == "Network.requestWillBeSent"}
        self.requested = list(asked.values())
        failed = [event["params"] for event in events if event["method"] == "Network.loadingFailed"]
        self.errors = {asked.get(failure["requestId"]): failure["errorText"] for failure in failed}
        self.stopped_by_policy = {asked.get(failure["requestId"]) for failure in failed if failure.get("blockedReason") == "csp"}
        self.policy_violations = [entry["message"] for entry in browser.get_log("browser") if "Content Security Policy" in entry["message"]]

    def sent_outside(self, base: str) -> list[str]:
        """Requests that reached the network for another host (data: and blob: URLs never reach a network)."""
        return [url for url in self.requested if not url.startswith((base + "/", "data:", "blob:")) and url not in self.stopped_by_policy]


def fetch(browser, url: str) -> str:
    """'ok' when the browser gets any answer from ``url`` (opaque ones included), else the error it got."""
    return browser.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "fetch(arguments[0], {mode: 'no-cors', cache: 'no-store'}).then(() => done('ok'), error => done(String(error)));", url)


def open_page(browser, url: str) -> None:
    Traffic(browser)  # forget what earlier pages asked for
    browser.get(url)


def test_the_browser_cannot_reach_the_outside(offline_browser, service):
    open_page(offline_browser, service + "/healthz")
    assert fetch(offline_browser, service + "/openapi.json") == "ok"  # the service itself answers
    for url in OUTSIDE:
        assert fetch(offline_browser, url).startswith("TypeError"), url
    # stopped by the options (the refusing proxy), whatever this machine's own network would have done
    errors = {}
    wait(offline_browser, lambda b: errors.update(Traffic(b).errors) or set(OUTSIDE) <= set(errors), timeout=10)
    assert errors == {url: "net::ERR_PROXY_CONNECTION_FAILED" for url in OUTSIDE}


def test_stock_fastapi_docs_stay_blank_offline(offline_browser, stock_service):
    """What the cut does to a CDN page: FastAPI's stock /docs gets no Swagger UI (so the test below can fail)."""
    open_page(offline_browser, stock_service + "/docs")
    wait(offline_browser, lambda b: b.execute_script("return document.readyState") == "complete")
    assert offline_browser.execute_script("return typeof SwaggerUIBundle") == "undefined"
    assert not offline_browser.find_elements("css selector", ".swagger-ui .opblock")
    assert CDN_SWAGGER_JS in Traffic(offline_browser).requested  # it was asked for, and did not load


def test_docs_render_swagger_ui_with_the_operations_offline(offline_browser, service, screenshots):
    open_page(offline_browser, service + "/docs")
    saliency = wait(offline_browser, lambda b: b.find_element("id", "operations-inline-saliency"))
    assert "/v1/saliency" in saliency.text
    assert len(offline_browser.find_elements("css selector", ".opblock")) > 20
    assert offline_browser.find_element("css selector", ".swagger-ui .info .title").text.startswith("ConvLens")
    offline_browser.save_screenshot(str(screenshots / "docs_offline.png"))
    traffic = Traffic(offline_browser)
    assert {service + "/docs/assets/swagger-ui-bundle.js", service + "/openapi.json"} <= set(traffic.requested)
    assert traffic.sent_outside(service) == [] and traffic.stopped_by_policy == set()
    assert traffic.policy_violations == []  # the policy lets everything Swagger UI needs through


def test_redoc_renders_offline(offline_browser, service, screenshots):
    open_page(offline_browser, service + "/redoc")
    saliency = wait(offline_browser, lambda b: b.find_element("css selector", "[data-section-id='operation/saliency']"))
    assert "/v1/saliency" in saliency.get_attribute("textContent")
    assert "ConvLens" in offline_browser.find_element("css selector", "h1").text
    offline_browser.save_screenshot(str(screenshots / "redoc_offline.png"))
    traffic = Traffic(offline_browser)
    assert {service + "/docs/assets/redoc.standalone.js", service + "/openapi.json"} <= set(traffic.requested)
    assert traffic.sent_outside(service) == []
    # all the policy stopped is an outside picture (ReDoc's logo): scripts, styles, the document and the search worker load
    assert all("Loading the image 'https://" in message for message in traffic.policy_violations), traffic.policy_violations
