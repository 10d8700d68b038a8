"""Liveness and readiness probes, and the Prometheus scrape."""

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from api.deps import JobsDep, SettingsDep
from api.problems import Problem
from worker.broker import BrokerUnavailable
from worker.storage import StorageUnavailable

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="The process lives")
def healthz() -> dict:
    return {"status": "ok"}


@router.get("/readyz", summary="Broker and storage answer; 503 otherwise")
def readyz(service: JobsDep, settings: SettingsDep) -> dict:
    checks = {}
    for name, check, errors in (("broker", service.ping, BrokerUnavailable), ("storage", service.storage.check, StorageUnavailable)):
        try:
            check()
            checks[name] = "ok"
        except errors as exc:
            checks[name] = str(exc)
    if any(value != "ok" for value in checks.values()):
        raise Problem(503, "not_ready", "; ".join(f"{k}: {v}" for k, v in checks.items() if v != "ok"),
                      {"Retry-After": str(settings.retry_after_seconds)}, checks=checks)
    return {"status": "ready", "checks": checks}


@router.get(
    "/metrics",
    summary="Prometheus metrics: requests, inline calls, queue depth, jobs, job durations, worker memory",
    response_class=Response,
    responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}},
)
def metrics(request: Request) -> Response:
    return Response(generate_latest(request.app.state.metrics.registry), media_type=CONTENT_TYPE_LATEST)
