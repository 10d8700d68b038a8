"""Every call of the API written once, for both clients.

A call is a plan: a generator that yields the HTTP requests it needs, gets each
answer back, and returns its result. :class:`convlens_client.ConvLens` runs the
plans with blocking requests and :class:`convlens_client.AsyncConvLens` awaits
them, so the two offer the same calls by construction (only following a job's
event stream, which reads as it goes, is written once per client).
"""

import functools
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from convlens_client._http import inline_request, job_request
from convlens_client._inputs import ImageLike, image_file
from convlens_client.errors import error_for
from convlens_client.models import Artifact, InlineResult, Job, StoredImage

Plan = Generator["Request", httpx.Response, Any]


@dataclass(frozen=True)
class Request:
    verb: str
    url: str
    options: dict = field(default_factory=dict)  # httpx's keyword arguments: files, data, json, params, headers


def _slots(images: dict[str, ImageLike | list[ImageLike]]) -> dict[str, list[tuple[str, bytes, str]]]:
    return {
        slot: [image_file(item, slot) for item in (value if isinstance(value, list) else [value])]
        for slot, value in images.items()
    }


class Calls:
    """The plans. Each public method here is a call of both clients, with this signature and docstring."""

    # -- catalogue ----------------------------------------------------------
    def models(self) -> Plan:
        """The models this key may use (built-in, its tenant's, published)."""
        return (yield Request("GET", "/v1/models")).json()["models"]

    def model(self, name: str) -> Plan:
        """One model's description: layers, sizes, capabilities, supported methods."""
        return (yield Request("GET", f"/v1/models/{name}")).json()

    def methods(self) -> Plan:
        """Every method with its category, inputs, params schema and whether it runs inline."""
        return (yield Request("GET", "/v1/methods")).json()["methods"]

    # -- stored inputs --------------------------------------------------------
    def upload_image(self, image: ImageLike) -> Plan:
        """``POST /v1/images``: store a picture once; jobs and inline calls name it by its id."""
        name, data, media_type = image_file(image)
        body = (yield Request("POST", "/v1/images", {"files": {"file": (name, data, media_type)}})).json()
        return StoredImage(body["id"], body.get("url", f"/v1/images/{body['id']}"), body)

    def upload_collection(self, images: list[ImageLike], name: str | None = None) -> Plan:
        """``POST /v1/collections`` (multipart, field ``files`` repeated; optional ``name``)."""
        files = [("files", image_file(item, f"image{i}")) for i, item in enumerate(images)]
        return (yield Request("POST", "/v1/collections", {"files": files, "data": {"name": name} if name else {}})).json()

    # -- inline methods -------------------------------------------------------
    def inline(self, method: str, images: dict[str, ImageLike | list[ImageLike]] | None = None, params: dict | None = None,
               model: str | None = None, embed: str | None = None) -> Plan:
        """Run an inline method; ``embed`` names the artifacts sent in the answer (``all``, ``main``, names); others are linked."""
        request = inline_request(method, _slots(images or {}), params, model, embed)
        return InlineResult.from_json((yield Request("POST", request.pop("url"), request)).json())

    def each(self, method: str, images: list[ImageLike], params: dict | None = None, model: str | None = None,
             embed: str | None = None) -> Plan:
        """Run a method that takes several pictures (classify, the gradient attributions) on each of ``images`` in
        one request: an InlineResult per picture, in order, or the ConvLensError of a picture it could not answer."""
        request = inline_request(method, {"image": [image_file(item, f"image{i}") for i, item in enumerate(images)]},
                                 params, model, embed)
        body = (yield Request("POST", request.pop("url"), request)).json()
        if "results" not in body:  # one picture: the usual answer
            return [InlineResult.from_json(body)]
        return [InlineResult.from_json(entry) if "problem" not in entry else error_for(entry["problem"]["status"], entry["problem"])
                for entry in body["results"]]

    def classify(self, image: ImageLike, model: str | None = None, **params) -> Plan:
        """The top classes of one picture."""
        return (yield from Calls.inline(self, "classify", {"image": image}, params, model))

    def attribute(self, method: str, image: ImageLike, model: str | None = None, embed: str | None = None, **params) -> Plan:
        """Any attribution method (saliency, gradcam, occlusion, ...) on one picture."""
        return (yield from Calls.inline(self, method, {"image": image}, params, model, embed))

    def saliency(self, image: ImageLike, model: str | None = None, **params) -> Plan:
        """Vanilla-gradient saliency of one picture."""
        return (yield from Calls.attribute(self, "saliency", image, model, **params))

    def gradcam(self, image: ImageLike, model: str | None = None, **params) -> Plan:
        """Grad-CAM of one picture."""
        return (yield from Calls.attribute(self, "gradcam", image, model, **params))

    def activations(self, image: ImageLike, layer: str, model: str | None = None, **params) -> Plan:
        """A layer's activation maps for one picture."""
        return (yield from Calls.inline(self, "activations", {"image": image}, {"layer": layer, **params}, model))

    def filters(self, layer: str, model: str | None = None, **params) -> Plan:
        """A layer's filters, drawn."""
        return (yield from Calls.inline(self, "filters", {}, {"layer": layer, **params}, model))

    def fetch(self, artifact: Artifact) -> Plan:
        """An artifact's bytes: embedded ones at once, linked ones downloaded (and kept)."""
        if artifact.content is None:
            artifact.content = (yield Request("GET", artifact.url)).content
        return artifact.content

    def save(self, artifact: Artifact, path: str | Path) -> Plan:
        """Write an artifact's bytes to ``path``."""
        path = Path(path)
        path.write_bytes((yield from Calls.fetch(self, artifact)))
        return path

    # -- jobs -------------------------------------------------------------------
    def submit(self, method: str, inputs: dict[str, ImageLike | str | list], model: str = "efficientnet_lite0",
               params: dict | None = None, webhook: dict | None = None, deadline_seconds: float | None = None,
               wait: float | None = None) -> Plan:
        """Submit a job; pictures in ``inputs`` are uploaded first (strings are taken as uploaded image ids)."""
        ids = {}
        for slot, value in inputs.items():
            items = value if isinstance(value, list) else [value]
            found = []
            for item in items:
                stored = isinstance(item, str) and not Path(item).exists()  # an uploaded image's id
                found.append(item if stored else (yield from Calls.upload_image(self, item)).id)
            ids[slot] = found if isinstance(value, list) else found[0]
        request = job_request(method, model, ids, params, webhook, deadline_seconds, wait)
        return Job.from_json((yield Request("POST", request.pop("url"), request)).json())

    def style(self, content: ImageLike, styles: ImageLike | list[ImageLike], **params) -> Plan:
        """Gatys style transfer of ``content`` in the style of ``styles`` on VGG19 (a job)."""
        return (yield from Calls.submit(self, "style_transfer", {"content": content, "style": styles if isinstance(styles, list) else [styles]},
                                       model="vgg19", params=params))

    def job(self, job_id: str) -> Plan:
        """A job as it stands."""
        return Job.from_json((yield Request("GET", f"/v1/jobs/{job_id}")).json())

    def cancel(self, job_id: str) -> Plan:
        """Cancel a job (it ends ``cancelled`` unless it finished first)."""
        return Job.from_json((yield Request("DELETE", f"/v1/jobs/{job_id}")).json())

    def download(self, job: Job, name: str | None = None, path: str | Path | None = None) -> Plan:
        """An artifact of a finished job (default: its main picture); written to ``path`` when given."""
        data = (yield Request("GET", job.artifact(name).url)).content
        if path is not None:
            Path(path).write_bytes(data)
        return data


def public_calls() -> dict[str, Callable[..., Plan]]:
    return {name: plan for name, plan in vars(Calls).items() if not name.startswith("_") and callable(plan)}


def blocking(plan: Callable[..., Plan]) -> Callable:
    """``plan`` as a method of the sync client, which sends each request with ``self._send``."""

    @functools.wraps(plan)
    def call(self, *args, **kwargs):
        steps = plan(self, *args, **kwargs)
        try:
            request = next(steps)
            while True:
                request = steps.send(self._send(request.verb, request.url, **request.options))
        except StopIteration as done:
            return done.value

    return call


def awaited(plan: Callable[..., Plan]) -> Callable:
    """``plan`` as a coroutine method of the async client, which awaits ``self._send`` for each request."""

    @functools.wraps(plan)
    async def call(self, *args, **kwargs):
        steps = plan(self, *args, **kwargs)
        try:
            request = next(steps)
            while True:
                request = steps.send(await self._send(request.verb, request.url, **request.options))
        except StopIteration as done:
            return done.value

    return call
