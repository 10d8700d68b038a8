"""Jobs end to end: upload -> submit -> follow (poll or SSE) -> download, on both storage backends.

Real methods carry the main paths: classify, a class visualisation streaming progress and
previews, a DeepDream cancelled mid-run. The test plugin's ``probe_steps`` stays where a job's
timing or failure must be controlled (duplicates, an unknown layer), as in the kill and
time-limit tests.
"""

import io
import json

import httpx
import redis
from PIL import Image

from tests.e2e.servers import wait_for


def test_classify_job_round_trip_by_polling(stack, chelsea):
    image_id = stack.upload(chelsea.resize((96, 64)))
    response = stack.submit("classify", image_id, top_k=3)
    assert response.status_code == 202, response.text
    assert response.headers["Location"] == f"/v1/jobs/{response.json()['id']}"
    assert int(response.headers["Retry-After"]) >= 1
    job = stack.wait(response.json()["id"])
    assert job["state"] == "succeeded", job
    assert job["deliveries"] == 1
    assert job["result"]["top"][0]["label"] in {"Egyptian cat", "tabby", "tiger cat"}
    main = next(a for a in job["artifacts"] if a["main"])
    png = stack.client.get(main["url"])
    assert png.status_code == 200 and png.headers["content-type"] == "image/png"
    image = Image.open(io.BytesIO(png.content))
    image.verify()
    assert image.format == "PNG"
    data = stack.client.get(next(a["url"] for a in job["artifacts"] if a["name"] == "result.json")).json()
    assert data["top"] == job["result"]["top"]
    if stack.settings.storage == "s3":
        direct = httpx.get(main["download_url"])  # presigned for the public endpoint (localhost)
        assert direct.status_code == 200 and direct.content == png.content
    else:
        assert main["download_url"] is None


def iter_events(stack, job_id: str):
    """The SSE stream of a job, (event, data) as each arrives, to its end."""
    event = None
    with stack.client.stream("GET", f"/v1/jobs/{job_id}/events") as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines():
            if line.startswith("event: "):
                event = line[len("event: "):]
            elif line.startswith("data: "):
                yield event, json.loads(line[len("data: "):])


def events(stack, job_id: str) -> list[tuple[str, dict]]:
    return list(iter_events(stack, job_id))


def test_job_followed_through_sse_ends_with_one_state_event(stack, coffee):
    image_id = stack.upload(coffee.resize((64, 64)))
    job_id = stack.submit("classify", image_id, top_k=2).json()["id"]
    stream = events(stack, job_id)
    assert [name for name, _ in stream][-1] == "state"
    assert all(name == "progress" for name, _ in stream[:-1])
    final = stream[-1][1]
    assert final["state"] == "succeeded" and final["result"]["top"][0]["label"] == "espresso"
    png = stack.client.get(next(a["url"] for a in final["artifacts"] if a["main"]))
    assert Image.open(io.BytesIO(png.content)).size == (224, 224)


def test_synthesis_job_streams_progress_with_an_eta_and_previews_while_running(stack):
    params = {"objectives": [{"kind": "class", "target_class": "flamingo"}], "size": 64, "steps": 40, "preview_every": 4}
    response = stack.client.post("/v1/jobs", json={"method": "class_visualization", "model": "efficientnet_lite0", "params": params})
    assert response.status_code == 202, response.text
    job_id = response.json()["id"]
    running, preview, state_after_preview = [], None, None
    for name, body in iter_events(stack, job_id):
        if name == "progress" and body["progress"]:
            running.append(body["progress"])
            if preview is None and "preview_url" in body["progress"]:
                preview = stack.client.get(body["progress"]["preview_url"])
                state_after_preview = stack.client.get(f"/v1/jobs/{job_id}").json()["state"]
    assert name == "state" and body["state"] == "succeeded", body

    steps = [p["step"] for p in running]
    assert len(steps) >= 3 and steps == sorted(steps) and steps[-1] > steps[0]
    assert all(p["total"] == 40 and p["eta_seconds"] is not None and 0 < p["fraction"] <= 1 for p in running)
    assert "loss" in running[-1]["info"]
    assert state_after_preview == "running" and preview.status_code == 200  # fetched while the job still ran
    assert preview.headers["content-type"] == "image/png" and Image.open(io.BytesIO(preview.content)).size == (64, 64)

    assert body["progress"]["step"] == 40 and body["progress"]["fraction"] == 1.0 and body["progress"]["eta_seconds"] == 0
    assert body["result"]["steps"] == 40 and len(body["result"]["losses"]) == 40
    main = next(a for a in body["artifacts"] if a["main"])
    picture = Image.open(io.BytesIO(stack.client.get(main["url"]).content))
    picture.load()
    assert picture.format == "PNG" and picture.size == (64, 64)
    assert {"loss_curve.png", "losses.npy", "result.json"} <= {a["name"] for a in body["artifacts"]}


def test_cancel_queued_job_never_runs_and_running_synthesis_stops_within_a_step(stack, chelsea, redis_server):
    image_id = stack.upload(chelsea.resize((96, 64)))
    # DeepDream on VGG19, 200 steps of ~0.1 s: long enough to cancel mid-run, with every step reported
    running_id = stack.submit("deepdream", image_id, model="vgg19", octaves=1, steps=200, max_side=64).json()["id"]
    stack.poll(running_id, lambda job: (job["progress"] or {}).get("step", 0) >= 2)
    queued_id = stack.submit("probe_steps", image_id, steps=3).json()["id"]
    assert stack.client.get(f"/v1/jobs/{queued_id}").json()["state"] == "queued"

    cancelled = stack.client.delete(f"/v1/jobs/{queued_id}")
    assert cancelled.status_code == 200 and cancelled.json()["state"] == "cancelled"

    requested = stack.client.delete(f"/v1/jobs/{running_id}")
    assert requested.status_code == 202 and requested.json()["cancel_requested"]
    step_at_cancel = requested.json()["progress"]["step"]
    job = stack.wait(running_id, timeout=10)
    assert job["state"] == "cancelled"
    # the next progress report after the cancel request stops it: at most one step past what DELETE saw
    assert step_at_cancel <= job["progress"]["step"] <= step_at_cancel + 1 < 200
    assert job["artifacts"] == [] and job["result"] is None

    broker = redis.Redis.from_url(stack.settings.redis_url)
    wait_for(lambda: broker.llen("gpu") == 0 and broker.hlen("unacked") == 0, 10, "the worker to drain its queue")
    queued = stack.client.get(f"/v1/jobs/{queued_id}").json()
    assert queued["state"] == "cancelled" and queued["deliveries"] == 0 and queued["started_at"] is None

    again = stack.client.delete(f"/v1/jobs/{running_id}")
    assert again.status_code == 409 and again.json()["code"] == "job_finished"
    resubmitted = stack.submit("probe_steps", image_id, steps=3)
    assert resubmitted.json()["id"] != queued_id  # a cancelled twin is not reused
    assert stack.wait(resubmitted.json()["id"])["state"] == "succeeded"


def test_identical_submissions_share_one_job(stack, coffee):
    image_id = stack.upload(coffee.resize((48, 48)))
    first = stack.submit("probe_steps", image_id, steps=20, sleep=0.05)
    twin = stack.submit("probe_steps", image_id, sleep=0.05, steps=20)  # same params, other order
    assert twin.status_code == 202 and twin.json()["id"] == first.json()["id"]
    stack.wait(first.json()["id"])
    done = stack.submit("probe_steps", image_id, steps=20, sleep=0.05)
    assert done.status_code == 200 and done.json()["id"] == first.json()["id"]
    other = stack.submit("probe_steps", image_id, steps=21, sleep=0.05)
    assert other.json()["id"] != first.json()["id"]
    stack.client.delete(f"/v1/jobs/{other.json()['id']}")


def test_failing_method_records_its_error(stack, chelsea):
    image_id = stack.upload(chelsea.resize((48, 48)))
    job_id = stack.submit("probe_steps", image_id, layer="no_such_layer").json()["id"]
    job = stack.wait(job_id)
    assert job["state"] == "failed"
    assert job["error"]["code"] == "unknown_layer" and "no_such_layer" in job["error"]["message"]
    retried = stack.submit("probe_steps", image_id, layer="no_such_layer").json()
    assert retried["id"] != job_id  # a failed twin is run again


def test_bad_submissions_are_refused_before_queueing(stack, chelsea):
    image_id = stack.upload(chelsea.resize((48, 48)))
    cases = [
        ({"method": "no_such_method", "model": "efficientnet_lite0", "inputs": {"image": image_id}}, 404, "unknown_method"),
        ({"method": "classify", "model": "no_such_model", "inputs": {"image": image_id}}, 404, "unknown_model"),
        ({"method": "classify", "model": "efficientnet_lite0", "inputs": {"image": image_id}, "params": {"top_k": 0}}, 422, "invalid_params"),
        ({"method": "classify", "model": "efficientnet_lite0", "inputs": {}}, 422, "missing_input"),  # as inline
        ({"method": "classify", "model": "efficientnet_lite0", "inputs": {"image": "0" * 32}}, 404, "unknown_image"),
        ({"method": "classify", "model": "vgg19", "inputs": {"image": image_id}}, 422, "unsupported_model"),
    ]
    for body, status, code in cases:
        response = stack.client.post("/v1/jobs", json=body)
        assert (response.status_code, response.json()["code"]) == (status, code), body
        assert response.headers["content-type"] == "application/problem+json"
    assert stack.client.get("/v1/jobs/0123456789abcdef01234567").json()["code"] == "unknown_job"


def test_jobs_list_newest_first_with_cursor_and_state_filter(stack, coffee):
    image_id = stack.upload(coffee.resize((40, 40)))
    ids = [stack.submit("classify", image_id, top_k=k).json()["id"] for k in (1, 2, 3)]
    for job_id in ids:
        stack.wait(job_id)
    first = stack.client.get("/v1/jobs", params={"limit": 2}).json()
    second = stack.client.get("/v1/jobs", params={"limit": 2, "cursor": first["next_cursor"]}).json()
    listed = [job["id"] for job in first["jobs"] + second["jobs"]]
    assert listed[:3] == ids[::-1]
    assert listed == sorted(listed, reverse=True) and len(set(listed)) == len(listed)
    failed = stack.client.get("/v1/jobs", params={"state": "succeeded", "limit": 100}).json()["jobs"]
    assert {job["state"] for job in failed} == {"succeeded"} and set(ids) <= {job["id"] for job in failed}
