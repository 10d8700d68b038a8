"""Dynamic batching of inline calls: concurrent requests of one method on one model share a pass (the
metrics count the batch), each answered exactly as alone, with its own class; more calls than inline
threads gather into one batch; a call that cannot share runs alone; a request whose own check fails in
a batch, or while it waits for one, does not touch the others."""

import asyncio
import base64
import io
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.inline_batcher import InlineBatcher
from api.inline_pool import InlinePool
from api.inline_progress import ClientGone
from api.keys import ApiKey
from engine.run import prepare
from tests.api.conftest import make_settings
from tests.pictures import encode

TARGETS = [None, "espresso", "goldfish", "tabby"]


@pytest.fixture(scope="module")
def pictures(chelsea, coffee, astronaut) -> list[dict]:
    return [{"base64": base64.b64encode(encode(p.resize((112, 96)))).decode()} for p in (chelsea, coffee, astronaut, chelsea)]


def saliency_map(body: dict) -> np.ndarray:
    return np.load(io.BytesIO(base64.b64decode(next(a for a in body["artifacts"] if a["name"] == "map")["data_base64"])))


def batch_count(client, size: str) -> float:
    for line in client.get("/metrics").text.splitlines():
        if line.startswith('convlens_inline_batch_size_bucket{le="' + size + '",method="saliency"}'):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_concurrent_requests_share_a_pass_and_each_gets_its_own_answer(tmp_path, pictures):
    settings = make_settings(storage_dir=str(tmp_path), inline_threads=4, inline_per_key=0, inline_batch_delay_ms=400)
    with TestClient(create_app(settings)) as client:
        def ask(i: int):
            params = {} if TARGETS[i] is None else {"target_class": TARGETS[i]}
            start.wait()
            return client.post("/v1/saliency?embed=map", json={"inputs": {"image": pictures[i]}, "params": params}).json()

        start = threading.Barrier(4)
        with ThreadPoolExecutor(4) as threads:
            together = list(threads.map(ask, range(4)))
        assert batch_count(client, "1.0") < batch_count(client, "64.0")  # some pass answered more than one call
    with TestClient(create_app(make_settings(storage_dir=str(tmp_path), inline_batch_delay_ms=0))) as alone_client:
        for i, body in enumerate(together):
            params = {} if TARGETS[i] is None else {"target_class": TARGETS[i]}
            alone = alone_client.post("/v1/saliency?embed=map", json={"inputs": {"image": pictures[i]}, "params": params}).json()
            assert body["data"]["target"]["label"] == alone["data"]["target"]["label"]
            ours, theirs = saliency_map(body), saliency_map(alone)
            assert np.abs(ours - theirs).max() <= 1e-5 * np.abs(theirs).max()
    assert [b["data"]["target"]["label"] for b in together[1:]] == ["espresso", "goldfish", "tabby"]


class Checks:
    """A request's own checks (InlineProgress): this one's client has gone once the batch is done, or
    once it has joined the queue (its second check, when a runner takes it)."""

    def __init__(self, gone_after_batch: bool, gone_in_queue: bool = False):
        self.gone_after_batch, self.gone_in_queue, self.calls = gone_after_batch, gone_in_queue, 0

    def __call__(self, step, total, preview=None, **info):
        self.calls += 1
        if (self.gone_after_batch and step == 1) or (self.gone_in_queue and self.calls == 2):
            raise ClientGone("the client disconnected")


def test_more_calls_than_inline_threads_share_one_batch(efficientnet, chelsea, coffee, astronaut):
    pool = InlinePool(threads=1, backlog=4, per_key=0)
    sizes = []
    pool.batcher = InlineBatcher(max_batch=3, delay_seconds=30.0, device="cpu", observe=lambda _m, size: sizes.append(size),
                                 lend=pool.lend_slot)
    call = prepare("saliency", "efficientnet_lite0", {}, {"image": 1})

    async def ask_all():
        key = ApiKey(id="k", tenant="t", scope="inline")
        return await asyncio.gather(*(pool.run(pool.batcher.run, call, {"image": picture.resize((96, 96))}, Checks(False), key=key)
                                      for picture in (chelsea, coffee, astronaut)))

    try:
        results = asyncio.run(ask_all())
    finally:
        pool.close()
    assert sizes == [3]  # one inline thread, yet one full batch of three (no 30 s wait)
    assert results[1].data["target"]["label"] == "espresso"


def test_a_request_gone_while_queued_is_left_out_of_its_batch(efficientnet, chelsea, coffee):
    sizes = []
    batcher = InlineBatcher(max_batch=2, delay_seconds=5.0, device="cpu", observe=lambda _m, size: sizes.append(size))
    call = prepare("saliency", "efficientnet_lite0", {}, {"image": 1})
    outcomes = [None, None]

    def ask(i, picture, checks):
        try:
            outcomes[i] = batcher.run(call, {"image": picture}, checks)
        except ClientGone as gone:
            outcomes[i] = gone

    threads = [threading.Thread(target=ask, args=(0, chelsea, Checks(False, gone_in_queue=True))),
               threading.Thread(target=ask, args=(1, coffee, Checks(False)))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert isinstance(outcomes[0], ClientGone)
    assert outcomes[1].data["target"]["label"] == "espresso"
    assert sizes == [1]  # the batch ran without the call that had gone


def test_a_request_gone_during_its_batch_fails_alone(efficientnet, chelsea, coffee):
    batcher = InlineBatcher(max_batch=2, delay_seconds=5.0, device="cpu")
    calls = [prepare("saliency", "efficientnet_lite0", {}, {"image": 1}) for _ in range(2)]
    outcomes = [None, None]

    def ask(i, picture, checks):
        try:
            outcomes[i] = batcher.run(calls[i], {"image": picture}, checks)
        except ClientGone as gone:
            outcomes[i] = gone

    threads = [threading.Thread(target=ask, args=(0, chelsea, Checks(True))), threading.Thread(target=ask, args=(1, coffee, Checks(False)))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert isinstance(outcomes[0], ClientGone)
    assert outcomes[1].data["target"]["label"] == "espresso"  # full batch of 2: ran without waiting the 5 s


def test_a_call_that_cannot_share_runs_at_once(efficientnet, chelsea):
    batcher = InlineBatcher(max_batch=8, delay_seconds=30.0, device="cpu")
    unit = prepare("guided_backprop", "efficientnet_lite0", {"layer": "blocks.2.0", "channel": 1}, {"image": 1})
    result = batcher.run(unit, {"image": chelsea}, Checks(False))  # no 30 s wait: a unit target never batches
    assert result.data["target"]["layer"] == "blocks.2.0"
