"""A request id follows a job into the real worker's JSON log; the worker's job metrics reach /metrics."""

import json

from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.conftest import stack_env, start_stack


def test_request_id_reaches_the_worker_log_and_job_metrics_reach_the_api(redis_server, s3_server, tmp_path, chelsea):
    stack = start_stack(stack_env(redis_server.url, "filesystem", tmp_path, s3_server), tmp_path / "worker.log")
    try:
        image_id = stack.upload(chelsea.resize((96, 64)))
        job = {"method": "classify", "model": "efficientnet_lite0", "inputs": {"image": image_id}, "params": {"top_k": 2}}
        submitted = stack.client.post("/v1/jobs", json=job, headers={"X-Request-ID": "trace-e2e-7"})
        assert submitted.status_code == 202 and submitted.headers["X-Request-ID"] == "trace-e2e-7"
        done = stack.wait(submitted.json()["id"])
        assert done["state"] == "succeeded" and done["request_id"] == "trace-e2e-7"

        logged = [json.loads(line) for line in stack.worker.log().splitlines() if line.startswith("{")]
        started = [entry for entry in logged if entry.get("request_id") == "trace-e2e-7"]
        assert started and started[0]["job_id"] == done["id"] and started[0]["tenant"] == "public"

        text = stack.client.get("/metrics").text
        found = {(s.name, tuple(sorted(s.labels.items()))): s.value
                 for family in text_string_to_metric_families(text) for s in family.samples}
        assert found[("convlens_jobs_total", (("method", "classify"), ("state", "succeeded")))] == 1
        assert found[("convlens_job_duration_seconds_count", (("method", "classify"),))] == 1
        assert found[("convlens_queue_depth", (("queue", "cpu"),))] == 0
        memory = [value for (name, _), value in found.items() if name == "convlens_worker_resident_memory_bytes"]
        assert memory and all(value > 50_000_000 for value in memory)  # a worker child with torch loaded
    finally:
        stack.client.close()
        stack.worker.stop()
