"""Fair share of the inline pool between keys (real keys, real Redis): one key saturating it with slow calls
keeps at most its share running or waiting, its excess calls are refused at once with 429 + Retry-After,
and another key's cheap calls keep a bounded latency meanwhile."""

import asyncio
import base64
import time

import httpx
import pytest

from api.inline_pool import InlinePool
from api.keys import ApiKey
from api.problems import Problem
from api.settings import Settings
from engine.synthesis.fast_style import StyleModelConfig, build
from tests.api.conftest import ADMIN_KEY, PROBE_GATE, Gate, make_settings
from tests.api.test_inline_pool import PROBE_BODY, serve, wait_until_entered
from tests.pictures import encode
from worker.storage import make_storage
from worker.style_models import StyleModelStore

ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}
STYLE_ID = "ef" * 12
BOUND_S = 5.0  # each cheap call of the other key; without the cap it would wait for the held calls (30 s)


@pytest.mark.parametrize("threads, share", [(1, 1), (2, 1), (3, 1), (4, 2), (8, 4)])
def test_the_default_share_leaves_other_keys_a_thread(threads, share):
    assert Settings(inline_threads=threads).inline_per_key == share
    assert Settings(inline_threads=threads, inline_per_key=0).inline_per_key == 0  # no cap, when asked


def test_a_saturating_key_gets_429_past_its_share_while_another_keys_cheap_calls_stay_fast(
        probe_method, monkeypatch, keyed_settings, chelsea):
    settings = make_settings(open_access=False, admin_key=ADMIN_KEY, redis_url=keyed_settings.redis_url,
                             storage_dir=keyed_settings.storage_dir, inline_threads=4, inline_backlog=16)
    assert settings.inline_per_key == 2
    gate = Gate()
    monkeypatch.setitem(PROBE_GATE, "gate", gate)
    photo = encode(chelsea.resize((64, 48)))
    cheap = {"model": "efficientnet_lite0", "params": {"top_k": 1}, "inputs": {"image": {"base64": base64.b64encode(photo).decode()}}}

    async def scenario(client, app):
        greedy, other = await make_key(client, "greedy"), await make_key(client, "other")
        style = StyleModelConfig(width=4, blocks=1, styles=1, style_names=["only"])  # random weights: only its route counts here
        StyleModelStore(make_storage(settings)).save("greedy", STYLE_ID, style, build(style).state_dict(), {"job": None})
        assert (await client.post("/v1/classify", json=cheap, headers=other)).status_code == 200  # warm
        try:
            calls = [asyncio.create_task(client.post("/v1/probe", json=PROBE_BODY, headers=greedy)) for _ in range(6)]
            await wait_until_entered(gate, 2)
            latencies = []
            for _ in range(3):
                start = time.perf_counter()
                answer = await asyncio.wait_for(client.post("/v1/classify", json=cheap, headers=other), BOUND_S)
                latencies.append(time.perf_counter() - start)
                assert answer.status_code == 200 and answer.json()["data"]["top"][0]["label"] in {"tabby", "tiger cat", "Egyptian cat"}
            await asyncio.wait_for(finished(calls, 4), 5)  # the four refused were answered at once; two stay held
            refused, held = [task.result() for task in calls if task.done()], [task for task in calls if not task.done()]
            stylize = await client.post("/v1/stylize", headers=greedy, json={"style_model": STYLE_ID, "image": cheap["inputs"]["image"]})
            pending = app.state.inline_pool.pending
        finally:
            gate.open.set()
        answered = await asyncio.gather(*held)
        again = await client.post("/v1/probe", json=PROBE_BODY, headers=greedy)  # its calls ended: its share is free
        return refused, stylize, latencies, pending, answered, again

    refused, stylize, latencies, pending, answered, again = asyncio.run(serve(settings, scenario))
    assert len(refused) == 4 and pending == 2  # nothing of the refused calls was queued
    for answer in [*refused, stylize]:
        assert answer.status_code == 429, answer.text
        assert answer.headers["content-type"] == "application/problem+json"
        assert answer.json()["code"] == "inline_per_key_limit" and int(answer.headers["retry-after"]) >= 1
    assert max(latencies) < BOUND_S
    assert [answer.status_code for answer in answered] == [200, 200]
    assert again.status_code == 200


def test_a_key_may_carry_its_own_share(probe_method, monkeypatch, keyed_settings):
    gate = Gate()
    monkeypatch.setitem(PROBE_GATE, "gate", gate)

    async def scenario(client, _app):
        narrow = await make_key(client, "narrow", inline_per_key=1)
        try:
            first = asyncio.create_task(client.post("/v1/probe", json=PROBE_BODY, headers=narrow))
            await wait_until_entered(gate, 1)
            second = await client.post("/v1/probe", json=PROBE_BODY, headers=narrow)
        finally:
            gate.open.set()
        return second, await first

    second, first = asyncio.run(serve(keyed_settings.model_copy(update={"inline_threads": 4, "inline_per_key": 3}), scenario))
    assert second.status_code == 429 and second.json()["code"] == "inline_per_key_limit"
    assert first.status_code == 200


def test_a_keys_call_counts_against_its_share_until_its_thread_ends_even_when_its_client_went():
    alice, bob = ApiKey(id="key_alice", tenant="alice", scope="submit"), ApiKey(id="key_bob", tenant="bob", scope="submit")

    async def scenario():
        pool = InlinePool(threads=2, backlog=4, per_key=1)
        gate = Gate()
        try:
            first = asyncio.create_task(pool.run(gate.open.wait, 30, key=alice))
            while pool.pending < 1:
                await asyncio.sleep(0.01)
            first.cancel()  # the client went away; its thread still runs
            await asyncio.sleep(0.05)
            with pytest.raises(Problem) as refused:
                await pool.run(sum, [1], key=alice)
            assert await asyncio.wait_for(pool.run(sum, [2], key=bob), 5) == 2  # another key runs meanwhile
            gate.open.set()
            while pool.pending:
                await asyncio.sleep(0.01)
            assert await pool.run(sum, [3], key=alice) == 3  # its share is free once its thread ended
            return refused.value
        finally:
            gate.open.set()
            pool.close()

    refused = asyncio.run(scenario())
    assert (refused.status, refused.code, refused.headers["Retry-After"]) == (429, "inline_per_key_limit", "1")


async def make_key(client: httpx.AsyncClient, tenant: str, **limits) -> dict[str, str]:
    made = await client.post("/v1/keys", json={"scope": "submit", "tenant": tenant, **limits}, headers=ADMIN)
    assert made.status_code == 201, made.text
    return {"X-API-Key": made.json()["key"]}



async def finished(tasks: list[asyncio.Task], count: int) -> None:
    while sum(task.done() for task in tasks) < count:
        await asyncio.sleep(0.01)
