"""The ConvLens client: :class:`ConvLens` (sync) and :class:`AsyncConvLens` (asyncio), both on httpx.

Every call raises a :class:`convlens_client.errors.ConvLensError` subclass for
an error answer (chosen by the problem document's ``code``) and retries 429 and
503 answers, honouring ``Retry-After``.
"""

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from convlens_client._http import (
    RetryPolicy, SSEParser, inline_request, job_request, raise_for_problem, sse_events, stream_error,
)
from convlens_client._inputs import ImageLike, image_file
from convlens_client.errors import JobFailed
from convlens_client.models import Artifact, InlineResult, Job, StoredImage

DEFAULT_URL = "http://127.0.0.1:8000"
ProgressCallback = Callable[[Job], None]
ATTRIBUTIONS = ("saliency", "gradcam", "guided_backprop", "deconvnet", "integrated_gradients", "smoothgrad",
                "occlusion", "segmentation")


def _slots(images: dict[str, ImageLike | list[ImageLike]]) -> dict[str, list[tuple[str, bytes, str]]]:
    return {
        slot: [image_file(item, slot) for item in (value if isinstance(value, list) else [value])]
        for slot, value in images.items()
    }


class _Bar:
    """A tqdm bar fed by a job's progress (steps), closed when the job ends."""

    def __init__(self, job_id: str, enabled: bool):
        self.bar, self.enabled, self.job_id = None, enabled, job_id

    def update(self, job: Job) -> None:
        if not self.enabled or job.progress is None:
            return
        if self.bar is None:
            from tqdm import tqdm

            self.bar = tqdm(total=job.progress.total, desc=f"{job.method} {self.job_id[-6:]}", unit="step")
        self.bar.n = job.progress.step
        loss = job.progress.info.get("loss")
        if loss is not None:
            self.bar.set_postfix(loss=f"{loss:.4g}", refresh=False)
        self.bar.refresh()

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

    # -- catalogue ----------------------------------------------------------
    def models(self) -> list[dict]:
        return self._send("GET", "/v1/models").json()["models"]

    def model(self, name: str) -> dict:
        return self._send("GET", f"/v1/models/{name}").json()

    def methods(self) -> list[dict]:
        return self._send("GET", "/v1/methods").json()["methods"]

    # -- stored inputs --------------------------------------------------------
    def upload_image(self, image: ImageLike) -> StoredImage:
        name, data, media_type = image_file(image)
        body = self._send("POST", "/v1/images", files={"file": (name, data, media_type)}).json()
        return StoredImage(body["id"], body.get("url", f"/v1/images/{body['id']}"), body)

    def upload_collection(self, images: list[ImageLike], name: str | None = None) -> dict:
        """``POST /v1/collections`` (multipart, field ``files`` repeated; optional ``name``)."""
        files = [("files", image_file(item, f"image{i}")) for i, item in enumerate(images)]
        return self._send("POST", "/v1/collections", files=files, data={"name": name} if name else {}).json()

    # -- inline methods -------------------------------------------------------
    def inline(self, method: str, images: dict[str, ImageLike | list[ImageLike]] | None = None, params: dict | None = None,
               model: str | None = None, embed: str | None = None) -> InlineResult:
        """Run an inline method; ``embed`` names the artifacts sent in the answer (``all``, ``main``, names); others are linked."""
        request = inline_request(method, _slots(images or {}), params, model, embed)
        return InlineResult.from_json(self._send("POST", request.pop("url"), **request).json())

    def classify(self, image: ImageLike, model: str | None = None, **params) -> InlineResult:
        return self.inline("classify", {"image": image}, params, model)

    def attribute(self, method: str, image: ImageLike, model: str | None = None, embed: str | None = None, **params) -> InlineResult:
        """Any attribution method (saliency, gradcam, occlusion, ...) on one picture."""
        return self.inline(method, {"image": image}, params, model, embed)

    def saliency(self, image: ImageLike, model: str | None = None, **params) -> InlineResult:
        return self.attribute("saliency", image, model, **params)

    def gradcam(self, image: ImageLike, model: str | None = None, **params) -> InlineResult:
        return self.attribute("gradcam", image, model, **params)

    def activations(self, image: ImageLike, layer: str, model: str | None = None, **params) -> InlineResult:
        return self.inline("activations", {"image": image}, {"layer": layer, **params}, model)

    def filters(self, layer: str, model: str | None = None, **params) -> InlineResult:
        return self.inline("filters", {}, {"layer": layer, **params}, model)

    def fetch(self, artifact: Artifact) -> bytes:
        """An artifact's bytes: embedded ones at once, linked ones downloaded (and kept)."""
        if artifact.content is None:
            artifact.content = self._send("GET", artifact.url).content
        return artifact.content

    def save(self, artifact: Artifact, path: str | Path) -> Path:
        path = Path(path)
        path.write_bytes(self.fetch(artifact))
        return path

    # -- jobs -------------------------------------------------------------------
    def submit(self, method: str, inputs: dict[str, ImageLike | str | list], model: str = "efficientnet_lite0",
               params: dict | None = None, webhook: dict | None = None, deadline_seconds: float | None = None,
               wait: float | None = None) -> Job:
        """Submit a job; pictures in ``inputs`` are uploaded first (strings are taken as uploaded image ids)."""
        ids = {slot: self._image_ids(value) for slot, value in inputs.items()}
        request = job_request(method, model, ids, params, webhook, deadline_seconds, wait)
        return Job.from_json(self._send("POST", request.pop("url"), **request).json())

    def _image_ids(self, value):
        if isinstance(value, list):
            return [self._image_ids(item) for item in value]
        return value if isinstance(value, str) and not Path(value).exists() else self.upload_image(value).id

    def style(self, content: ImageLike, styles: ImageLike | list[ImageLike], **params) -> Job:
        """Gatys style transfer of ``content`` in the style of ``styles`` on VGG19 (a job)."""
        return self.submit("style_transfer", {"content": content, "style": styles if isinstance(styles, list) else [styles]},
                           model="vgg19", params=params)

    def job(self, job_id: str) -> Job:
        return Job.from_json(self._send("GET", f"/v1/jobs/{job_id}").json())

    def cancel(self, job_id: str) -> Job:
        return Job.from_json(self._send("DELETE", f"/v1/jobs/{job_id}").json())

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

    def download(self, job: Job, name: str | None = None, path: str | Path | None = None) -> bytes:
        """An artifact of a finished job (default: its main picture); written to ``path`` when given."""
        data = self._send("GET", job.artifact(name).url).content
        if path is not None:
            Path(path).write_bytes(data)
        return data


class AsyncConvLens:
    """The asyncio client: the same calls as :class:`ConvLens`, awaited."""

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

    async def models(self) -> list[dict]:
        return (await self._send("GET", "/v1/models")).json()["models"]

    async def methods(self) -> list[dict]:
        return (await self._send("GET", "/v1/methods")).json()["methods"]

    async def upload_image(self, image: ImageLike) -> StoredImage:
        name, data, media_type = image_file(image)
        body = (await self._send("POST", "/v1/images", files={"file": (name, data, media_type)})).json()
        return StoredImage(body["id"], body.get("url", f"/v1/images/{body['id']}"), body)

    async def inline(self, method: str, images: dict[str, ImageLike | list[ImageLike]] | None = None,
                     params: dict | None = None, model: str | None = None, embed: str | None = None) -> InlineResult:
        request = inline_request(method, _slots(images or {}), params, model, embed)
        return InlineResult.from_json((await self._send("POST", request.pop("url"), **request)).json())

    async def fetch(self, artifact: Artifact) -> bytes:
        if artifact.content is None:
            artifact.content = (await self._send("GET", artifact.url)).content
        return artifact.content

    async def submit(self, method: str, inputs: dict[str, ImageLike | str | list], model: str = "efficientnet_lite0",
                     params: dict | None = None, webhook: dict | None = None, deadline_seconds: float | None = None,
                     wait: float | None = None) -> Job:
        ids = {slot: await self._image_ids(value) for slot, value in inputs.items()}
        request = job_request(method, model, ids, params, webhook, deadline_seconds, wait)
        return Job.from_json((await self._send("POST", request.pop("url"), **request)).json())

    async def _image_ids(self, value):
        if isinstance(value, list):
            return [await self._image_ids(item) for item in value]
        return value if isinstance(value, str) and not Path(value).exists() else (await self.upload_image(value)).id

    async def job(self, job_id: str) -> Job:
        return Job.from_json((await self._send("GET", f"/v1/jobs/{job_id}")).json())

    async def cancel(self, job_id: str) -> Job:
        return Job.from_json((await self._send("DELETE", f"/v1/jobs/{job_id}")).json())

    async def wait(self, job: Job | str, progress: bool = False, on_progress: ProgressCallback | None = None,
                   raise_on_failure: bool = True) -> Job:
        job_id = job if isinstance(job, str) else job.id
        bar, final, parser = _Bar(job_id, progress), None, SSEParser()
        try:
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
                    final = Job.from_json(data)
                    bar.update(final)
                    if on_progress is not None:
                        on_progress(final)
        finally:
            bar.close()
        final = final or await self.job(job_id)
        if raise_on_failure and final.state != "succeeded":
            raise JobFailed(final)
        return final

    async def download(self, job: Job, name: str | None = None, path: str | Path | None = None) -> bytes:
        data = (await self._send("GET", job.artifact(name).url)).content
        if path is not None:
            Path(path).write_bytes(data)
        return data

