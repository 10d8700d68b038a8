"""The ConvLens client: :class:`ConvLens` (sync) and :class:`AsyncConvLens` (asyncio), both on httpx.

Every call raises a :class:`convlens_client.errors.ConvLensError` subclass for
an error answer (chosen by the problem document's ``code``) and retries 429 and
503 answers, honouring ``Retry-After``.
"""

import asyncio
import sys
import time
from collections.abc import Callable

import httpx

from convlens_client._http import RetryPolicy, SSEParser, raise_for_problem, sse_events, stream_error
from convlens_client.calls import awaited, blocking, public_calls
from convlens_client.errors import JobFailed
from convlens_client.models import Job

DEFAULT_URL = "http://127.0.0.1:8000"
ProgressCallback = Callable[[Job], None]


class _Bar:
    """A tqdm bar fed by a job's progress (steps), closed when the job ends."""

    def __init__(self, job_id: str, enabled: bool):
        self.bar, self.enabled, self.job_id = None, enabled, job_id
        self.waiting = ""

    def update(self, job: Job) -> None:
        if self.enabled and job.state == "queued" and job.queue is not None and str(job.queue) != self.waiting:
            self.waiting = str(job.queue)  # "queued, position 1, about 40 s", each time it changes
            print(f"{job.method} {self.job_id[-6:]}: {self.waiting}", file=sys.stderr)
        if not self.enabled or job.progress is None:
            return
        step = job.progress.step
        if self.bar is None:
            from tqdm import tqdm

            # Start where the job is: steps made before we looked are not steps made in no time
            # (setting n to them on a fresh bar showed a first rate of ~20,000 step/s).
            self.bar = tqdm(total=job.progress.total, initial=step, desc=f"{job.method} {self.job_id[-6:]}", unit="step")
        loss = job.progress.info.get("loss")
        if loss is not None:
            self.bar.set_postfix(loss=f"{loss:.4g}", refresh=False)
        if step != self.bar.n:
            self.bar.update(step - self.bar.n)  # rate from the steps and time between updates (tqdm's smoothing)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


class ConvLens:
    """Synchronous client. ``ConvLens("http://host:8000", api_key=...)``; use as a context manager or ``close()``."""

    def __init__(self, base_url: str = DEFAULT_URL, api_key: str | None = None, timeout: float = 120.0,
                 retry: RetryPolicy = RetryPolicy(), transport: httpx.BaseTransport | None = None):
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.http = httpx.Client(base_url=base_url, headers=headers, timeout=timeout, transport=transport)
        self.retry = retry

    def __enter__(self) -> "ConvLens":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self.http.close()

    def _send(self, verb: str, url: str, **kwargs) -> httpx.Response:
        for attempt in range(self.retry.attempts):
            response = self.http.request(verb, url, **kwargs)
            if response.status_code not in (429, 503) or attempt == self.retry.attempts - 1:
                break
            time.sleep(self.retry.delay(attempt, response))
        raise_for_problem(response)
        return response

    def events(self, job_id: str):
        """The job's server-sent events: ``(event, Job)`` until its final state."""
        with self.http.stream("GET", f"/v1/jobs/{job_id}/events", timeout=httpx.Timeout(30, read=None)) as response:
            if response.status_code >= 400:
                response.read()
                raise_for_problem(response)
            for event, data in sse_events(response.iter_lines()):
                if event == "error":
                    raise stream_error(data)
                yield event, Job.from_json(data)

    def wait(self, job: Job | str, progress: bool = False, on_progress: ProgressCallback | None = None,
             raise_on_failure: bool = True) -> Job:
        """Follow a job over SSE to its end; ``progress=True`` draws a tqdm bar, ``on_progress`` gets every update."""
        job_id = job if isinstance(job, str) else job.id
        bar = _Bar(job_id, progress)
        try:
            final = job if isinstance(job, Job) and job.finished else None
            if final is None:
                for _event, update in self.events(job_id):
                    bar.update(update)
                    if on_progress is not None:
                        on_progress(update)
                    final = update
            if final is None:
                final = self.job(job_id)
        finally:
            bar.close()
        if raise_on_failure and final.state != "succeeded":
            raise JobFailed(final)
        return final


class AsyncConvLens:
    """The asyncio client: the same calls as :class:`ConvLens` (both run :class:`convlens_client.calls.Calls`), awaited."""

    def __init__(self, base_url: str = DEFAULT_URL, api_key: str | None = None, timeout: float = 120.0,
                 retry: RetryPolicy = RetryPolicy(), transport: httpx.AsyncBaseTransport | None = None):
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.http = httpx.AsyncClient(base_url=base_url, headers=headers, timeout=timeout, transport=transport)
        self.retry = retry

    async def __aenter__(self) -> "AsyncConvLens":
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    async def close(self) -> None:
        await self.http.aclose()

    async def _send(self, verb: str, url: str, **kwargs) -> httpx.Response:
        for attempt in range(self.retry.attempts):
            response = await self.http.request(verb, url, **kwargs)
            if response.status_code not in (429, 503) or attempt == self.retry.attempts - 1:
                break
            await asyncio.sleep(self.retry.delay(attempt, response))
        raise_for_problem(response)
        return response

    async def events(self, job_id: str):
        """The job's server-sent events: ``(event, Job)`` until its final state."""
        parser = SSEParser()
        async with self.http.stream("GET", f"/v1/jobs/{job_id}/events", timeout=httpx.Timeout(30, read=None)) as response:
            if response.status_code >= 400:
                await response.aread()
                raise_for_problem(response)
            async for line in response.aiter_lines():
                parsed = parser.feed(line)
                if parsed is None:
                    continue
                event, data = parsed
                if event == "error":
                    raise stream_error(data)
                yield event, Job.from_json(data)

    async def wait(self, job: Job | str, progress: bool = False, on_progress: ProgressCallback | None = None,
                   raise_on_failure: bool = True) -> Job:
        """Follow a job over SSE to its end; ``progress=True`` draws a tqdm bar, ``on_progress`` gets every update."""
        job_id = job if isinstance(job, str) else job.id
        bar = _Bar(job_id, progress)
        try:
            final = job if isinstance(job, Job) and job.finished else None
            if final is None:
                async for _event, update in self.events(job_id):
                    bar.update(update)
                    if on_progress is not None:
                        on_progress(update)
                    final = update
            if final is None:
                final = await self.job(job_id)
        finally:
            bar.close()
        if raise_on_failure and final.state != "succeeded":
            raise JobFailed(final)
        return final

for _name, _plan in public_calls().items():
    setattr(ConvLens, _name, blocking(_plan))
    setattr(AsyncConvLens, _name, awaited(_plan))
