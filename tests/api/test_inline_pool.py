"""Inline work runs in a bounded pool: concurrent calls are all answered, the
event loop stays free, and a full pool answers 429 with Retry-After."""

import asyncio
import base64

import httpx
import pytest
from PIL import Image

from api.app import create_app
from api.inline_pool import InlinePool
from api.keys import ApiKey
from api.problems import Problem
from tests.api.conftest import PROBE_GATE, Gate, make_settings
from tests.pictures import encode

B64 = base64.b64encode(encode(Image.new("RGB", (40, 30), (30, 60, 90)))).decode()
PROBE_BODY = {"inputs": {"images": [{"base64": B64}, {"base64": B64}]}}
KEY = ApiKey(id="key_a", tenant="a", scope="submit")


async def serve(settings, scenario):
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://convlens", timeout=120) as client:
            return await scenario(client, app)


def test_eight_concurrent_classify_calls_are_all_answered(chelsea, coffee):
    photos = [encode(photo.resize((128, 96))) for photo in (chelsea, coffee)] * 4

    async def scenario(client, _app):
        calls = [
            client.post("/v1/classify", files={"image": ("p.png", photo, "image/png")}, data={"params": '{"top_k": 1}'})
            for photo in photos
        ]
        return await asyncio.gather(*calls)

    responses = asyncio.run(serve(make_settings(inline_threads=2, inline_backlog=8), scenario))
    assert [response.status_code for response in responses] == [200] * 8
    tops = [response.json()["data"]["top"][0]["label"] for response in responses]
    assert tops[1::2] == ["espresso"] * 4 and len(set(tops[0::2])) == 1


async def wait_until_entered(gate: Gate, count: int):
    for _ in range(count):
        assert await asyncio.to_thread(gate.entered.acquire, True, 30)


def test_event_loop_answers_while_the_pool_is_busy_and_a_full_pool_answers_429(probe_method, monkeypatch):
    gate = Gate()
    monkeypatch.setitem(PROBE_GATE, "gate", gate)

    async def scenario(client, app):
        held = [asyncio.create_task(client.post("/v1/probe", json=PROBE_BODY)) for _ in range(2)]
        await wait_until_entered(gate, 1)  # one call runs (one thread), the other waits in the backlog
        while app.state.inline_pool.pending < 2:
            await asyncio.sleep(0.01)
        catalogue = await client.get("/v1/models")  # the loop is free while the pool is blocked
        refused = await client.post("/v1/probe", json=PROBE_BODY)
        gate.open.set()
        return catalogue, refused, await asyncio.gather(*held)

    catalogue, refused, held = asyncio.run(serve(make_settings(inline_threads=1, inline_backlog=1), scenario))
    assert catalogue.status_code == 200 and catalogue.json()["models"]
    assert refused.status_code == 429
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.json()["code"] == "busy" and int(refused.headers["retry-after"]) >= 1
    assert [response.status_code for response in held] == [200, 200]


def test_pool_counts_work_until_it_finishes():
    async def scenario():
        pool = InlinePool(threads=1, backlog=0, per_key=0)
        try:
            assert await pool.run(sum, [1, 2, 3], key=KEY) == 6
            assert pool.pending == 0
            gate = Gate()
            first = asyncio.create_task(pool.run(gate.open.wait, 30, key=KEY))
            while pool.pending < 1:
                await asyncio.sleep(0.01)
            with pytest.raises(Problem) as refused:
                await pool.run(sum, [1], key=KEY)
            first.cancel()  # the client went away: the thread still runs, and still counts
            await asyncio.sleep(0.05)
            assert pool.pending == 1
            gate.open.set()
            while pool.pending:
                await asyncio.sleep(0.01)
            assert await pool.run(sum, [4], key=KEY) == 4
            return refused.value
        finally:
            pool.close()

    refused = asyncio.run(scenario())
    assert (refused.status, refused.code, refused.headers["Retry-After"]) == (429, "busy", "1")
