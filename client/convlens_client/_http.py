"""What the sync and async clients share: request shapes, answer parsing, retry timing, SSE lines."""

import json
import random
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import httpx

from convlens_client.errors import ConvLensError, error_for

RETRY_STATUSES = frozenset({429, 503})


@dataclass(frozen=True)
class RetryPolicy:
    """Retries on 429 and 503: wait Retry-After when given, else ``base * 2**attempt`` (+ jitter), capped."""

    attempts: int = 4
    base: float = 0.5
    cap: float = 30.0

    def delay(self, attempt: int, response: httpx.Response) -> float:
        header = response.headers.get("retry-after")
        if header is not None:
            try:
                return min(float(header), self.cap)
            except ValueError:
                pass
        return min(self.base * 2**attempt, self.cap) * (0.5 + random.random() / 2)


def raise_for_problem(response: httpx.Response) -> None:
    if response.status_code < 400:
        return
    try:
        problem = response.json()
        if not isinstance(problem, dict):
            raise ValueError
    except ValueError:
        problem = {"code": "http_error", "detail": response.text[:500]}
    retry_after = response.headers.get("retry-after")
    raise error_for(response.status_code, problem, float(retry_after) if retry_after and retry_after.isdigit() else None)


def inline_request(method: str, images: dict[str, list[tuple[str, bytes, str]]], params: dict | None,
                   model: str | None, embed: str | None) -> dict:
    files = [(slot, item) for slot, items in images.items() for item in items]
    data = {}
    if model is not None:
        data["model"] = model
    if params:
        data["params"] = json.dumps(params)
    query = {"embed": embed} if embed is not None else {}
    return {"url": f"/v1/{method}", "files": files or None, "data": data, "params": query}


def job_request(method: str, model: str, inputs: dict, params: dict | None, webhook: dict | None,
                deadline_seconds: float | None, wait: float | None) -> dict:
    body = {"method": method, "model": model, "inputs": inputs, "params": params or {}}
    if webhook is not None:
        body["webhook"] = webhook
    if deadline_seconds is not None:
        body["deadline_seconds"] = deadline_seconds
    headers = {"Prefer": f"wait={wait:g}"} if wait else {}
    return {"url": "/v1/jobs", "json": body, "headers": headers}


class SSEParser:
    """Feed text/event-stream lines; complete events come back as (event, data); comments (heartbeats) skipped."""

    def __init__(self):
        self.event, self.data = "message", []

    def feed(self, line: str) -> tuple[str, dict] | None:
        if not line:
            done = (self.event, json.loads("\n".join(self.data))) if self.data else None
            self.event, self.data = "message", []
            return done
        if line.startswith("event:"):
            self.event = line[6:].strip()
        elif line.startswith("data:"):
            self.data.append(line[5:].lstrip())
        return None


def sse_events(lines: Iterable[str]) -> Iterator[tuple[str, dict]]:
    parser = SSEParser()
    for line in lines:
        event = parser.feed(line)
        if event is not None:
            yield event


def stream_error(data: dict) -> ConvLensError:
    return error_for(503, {"code": data.get("code", "broker_unavailable"), "detail": data.get("detail", "")})
