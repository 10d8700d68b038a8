"""Bodies over the upload limit are refused with 413 before they are buffered."""

import json

import anyio
import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.body_limit import BodySizeLimit
from tests.api.conftest import make_settings

LIMIT = 10_000


class Recorder:
    """An inner ASGI app that reads the whole body, counting what reaches it."""

    def __init__(self):
        self.called = False
        self.bytes_seen = 0

    async def __call__(self, scope, receive, send):
        self.called = True
        more = True
        while more:
            message = await receive()
            self.bytes_seen += len(message.get("body", b""))
            more = message.get("more_body", False)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"read it all"})


def call(app, chunks: list[bytes], content_length: int | None):
    headers = [(b"content-length", str(content_length).encode())] if content_length is not None else []
    scope = {"type": "http", "method": "POST", "path": "/", "headers": headers}
    pending = [{"type": "http.request", "body": chunk, "more_body": i < len(chunks) - 1} for i, chunk in enumerate(chunks)]
    sent = []

    async def receive():
        return pending.pop(0)

    async def send(message):
        sent.append(message)

    anyio.run(app, scope, receive, send)
    return sent, len(pending)


def test_declared_length_over_the_limit_is_refused_unread():
    inner = Recorder()
    sent, unread = call(BodySizeLimit(inner, LIMIT), [b"x" * 4000] * 5, content_length=20_000)
    assert not inner.called and unread == 5
    assert sent[0]["status"] == 413
    assert json.loads(sent[1]["body"])["code"] == "payload_too_large"


def test_streamed_body_is_cut_off_at_the_limit():
    inner = Recorder()
    sent, unread = call(BodySizeLimit(inner, LIMIT), [b"x" * 4000] * 10, content_length=None)
    assert inner.bytes_seen <= 8000 and unread == 7  # stopped at the chunk that crossed the limit
    assert [message["type"] for message in sent] == ["http.response.start", "http.response.body"]
    assert sent[0]["status"] == 413 and json.loads(sent[1]["body"])["code"] == "payload_too_large"


def test_bodies_within_the_limit_pass_untouched():
    inner = Recorder()
    sent, _ = call(BodySizeLimit(inner, LIMIT), [b"x" * 5000, b"x" * 5000], content_length=None)
    assert inner.bytes_seen == 10_000 and sent[0]["status"] == 200 and sent[1]["body"] == b"read it all"


@pytest.fixture(scope="module")
def small_limit_client():
    with TestClient(create_app(make_settings(max_upload_bytes=LIMIT))) as client:
        yield client


def assert_too_large(response):
    assert response.status_code == 413
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == "payload_too_large"


def test_app_refuses_a_large_upload_with_content_length(small_limit_client):
    response = small_limit_client.post("/v1/classify", files={"image": ("big.png", b"\0" * 50_000, "image/png")})
    assert_too_large(response)


def test_app_refuses_a_large_chunked_upload(small_limit_client):
    def chunks():
        for _ in range(20):
            yield b"x" * 4096

    response = small_limit_client.post("/v1/classify", content=chunks(), headers={"content-type": "application/json"})
    assert "content-length" not in response.request.headers
    assert_too_large(response)


def test_app_refuses_a_large_chunked_multipart_upload(small_limit_client):
    boundary = b"limit"
    head = b"--limit\r\nContent-Disposition: form-data; name=\"image\"; filename=\"a.png\"\r\n\r\n"

    def chunks():
        yield head
        for _ in range(20):
            yield b"\0" * 4096
        yield b"\r\n--limit--\r\n"

    response = small_limit_client.post(
        "/v1/classify", content=chunks(), headers={"content-type": f"multipart/form-data; boundary={boundary.decode()}"}
    )
    assert_too_large(response)
