"""Each tenant holds at most ``max_event_streams`` job event streams open at once: a real uvicorn, a real Redis, real queued jobs."""

import concurrent.futures
import contextlib
import time

import httpx
import pytest

from api.app import create_app
from tests.api.test_keys_and_tenancy import ADMIN, TEAL, assert_problem
from tests.e2e.servers import LiveAPI, wait_for
from worker.jobs import JobStore, connect

CAP = 3


@pytest.fixture
def live(keyed_settings):
    app = create_app(keyed_settings.model_copy(update={"max_event_streams": CAP}))
    api = LiveAPI(app).start()
    yield api.url, app
    api.stop()


def tenant_with_a_job(url: str, **key_fields) -> tuple[dict, str]:
    """A new key (its own tenant unless one is named) and a job of it, left queued (no worker runs here)."""
    key = httpx.post(f"{url}/v1/keys", json={"scope": "submit", **key_fields}, headers=ADMIN)
    assert key.status_code == 201, key.text
    headers = {"X-API-Key": key.json()["key"]}
    image = httpx.post(f"{url}/v1/images", files={"file": ("a.png", TEAL, "image/png")}, headers=headers)
    job = {"method": "classify", "model": "efficientnet_lite0", "inputs": {"image": image.json()["id"]}, "params": {"top_k": 1}}
    answer = httpx.post(f"{url}/v1/jobs", json=job, headers=headers)
    assert answer.status_code == 202, answer.text
    return headers, answer.json()["id"]


def open_stream(streams: contextlib.ExitStack, client: httpx.Client, job_id: str, headers: dict) -> httpx.Response:
    """An event stream held open (until ``streams`` closes it); a live one has sent its first event."""
    response = streams.enter_context(client.stream("GET", f"/v1/jobs/{job_id}/events", headers=headers))
    if response.status_code == 200:
        response.lines = response.iter_lines()  # kept: a line iterator dropped half read closes its stream
        assert next(response.lines) == "event: progress"
    else:
        response.read()
    return response


def test_a_tenant_past_its_open_streams_gets_429_until_one_ends_and_other_tenants_are_unaffected(live):
    url, app = live
    alice, alice_job = tenant_with_a_job(url, tenant="alice")
    bob, bob_job = tenant_with_a_job(url)
    with httpx.Client(base_url=url, timeout=30) as client, contextlib.ExitStack() as held:
        first = held.enter_context(contextlib.ExitStack())  # one stream the client will close early
        opened = [open_stream(first, client, alice_job, alice)] + [open_stream(held, client, alice_job, alice) for _ in range(CAP - 1)]
        assert [response.status_code for response in opened] == [200] * CAP and app.state.event_streams.open["alice"] == CAP

        refused = open_stream(held, client, alice_job, alice)
        body = assert_problem(refused, 429, "too_many_streams")
        assert body["limit"] == CAP and str(CAP) in body["detail"]
        assert int(refused.headers["Retry-After"]) >= 1
        assert open_stream(held, client, bob_job, bob).status_code == 200  # another tenant: streams of its own

        first.close()  # the client goes: the server ends that stream and gives its place back
        wait_for(lambda: app.state.event_streams.open["alice"] == CAP - 1, 10, "the closed stream to be given back")
        assert open_stream(held, client, alice_job, alice).status_code == 200
        assert_problem(open_stream(held, client, alice_job, alice), 429, "too_many_streams")

        assert client.delete(f"/v1/jobs/{alice_job}", headers=alice).status_code in (200, 202)  # its streams end with it
        wait_for(lambda: app.state.event_streams.open["alice"] == 0, 10, "the ended streams to be given back")


@pytest.fixture
def live_cap_2(keyed_settings):
    app = create_app(keyed_settings.model_copy(update={"max_event_streams": 2}))
    api = LiveAPI(app).start()
    yield api.url, app
    api.stop()


def test_a_prefer_wait_takes_a_stream_place_and_past_the_cap_answers_the_job_at_once(live_cap_2):
    url, app = live_cap_2
    alice, job_id = tenant_with_a_job(url, tenant="alice")
    with httpx.Client(base_url=url, timeout=30) as client, contextlib.ExitStack() as held:
        first = held.enter_context(contextlib.ExitStack())
        assert [open_stream(first, client, job_id, alice).status_code, open_stream(held, client, job_id, alice).status_code] == [200, 200]
        submitted = client.get(f"/v1/jobs/{job_id}", headers=alice).json()
        again = {name: submitted[name] for name in ("method", "model", "inputs", "params")}

        started = time.monotonic()
        answer = client.post("/v1/jobs", json=again, headers={**alice, "Prefer": "wait=5"})
        assert time.monotonic() - started < 2.5, "past the cap the wait is skipped, not served"
        assert answer.status_code == 202 and answer.json()["state"] == "queued", answer.text
        assert "Preference-Applied" not in answer.headers and answer.headers["Location"] == f"/v1/jobs/{answer.json()['id']}"
        assert app.state.event_streams.open["alice"] == 2

        first.close()  # a place comes free: the next wait takes it, holds it while waiting and gives it back
        wait_for(lambda: app.state.event_streams.open["alice"] == 1, 10, "the closed stream to be given back")
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            started = time.monotonic()
            waiting = pool.submit(client.post, "/v1/jobs", json=again, headers={**alice, "Prefer": "wait=2"})
            wait_for(lambda: app.state.event_streams.open["alice"] == 2, 10, "the wait to take a place")
            assert_problem(open_stream(held, client, job_id, alice), 429, "too_many_streams")  # the wait holds that place
            answer = waiting.result()
        assert time.monotonic() - started >= 1.9
        assert answer.status_code == 202 and answer.json()["state"] == "queued" and answer.headers["Preference-Applied"] == "wait=2"
        wait_for(lambda: app.state.event_streams.open["alice"] == 1, 10, "the wait's place to be given back")
