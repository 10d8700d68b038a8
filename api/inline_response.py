"""A Result -> the bytes of the answer the client asked for.

- ``application/json`` (default): :class:`api.schemas.InlineResult`, the
  artifacts named by ``?embed=`` embedded in base64 (PNG images, ``.npy``
  arrays), the others linked (:mod:`api.inline_links`), encoded only if fetched;
- ``Accept: image/png``: the main picture itself;
- ``?artifact=<name>``: that artifact itself, PNG for an image or ``.npy`` for
  an array (Accept may name its type, or ``*/*``).
"""

import base64
import json
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from api.problems import Problem
from engine.encoding import NPY, PNG, encode_artifact, has_artifact
from engine.result import Result

JSON = "application/json"


@dataclass(frozen=True)
class Wanted:
    """What the client asked for, decided before any work is done."""

    media_type: str  # for an artifact: the first acceptable of PNG / NPY, checked again once its kind is known
    artifact: str | None = None
    accept: str | None = None
    embed: frozenset[str] | None = None  # artifact names embedded in JSON ("main": the main picture); None: all


def negotiate(accept: str | None, artifact: str | None, embed: frozenset[str] | None = None) -> Wanted:
    offers = [PNG, NPY] if artifact else [JSON, PNG]
    choice = _choose(accept, offers)
    if choice is None:
        what = f"artifact {artifact!r} as " if artifact else ""
        raise Problem(406, "not_acceptable", f"can answer {what}{' or '.join(offers)}, not {accept!r}")
    return Wanted(choice, artifact, accept, embed)


def _choose(accept: str | None, offers: list[str]) -> str | None:
    """The first offer matching the highest-quality Accept entry (none or empty: the first offer)."""
    if not accept or not accept.strip():
        return offers[0]
    entries = []
    for position, part in enumerate(accept.split(",")):
        media, *options = [piece.strip() for piece in part.split(";")]
        quality = 1.0
        for option in options:
            if option.startswith("q="):
                try:
                    quality = float(option[2:])
                except ValueError:
                    quality = 0.0
        if quality > 0:
            entries.append((-quality, position, media.lower()))
    for _, _, media in sorted(entries):
        for offer in offers:
            if media in (offer, "*/*", offer.split("/")[0] + "/*"):
                return offer
    return None


def render(result: Result, wanted: Wanted, keep: Callable[[Result], str] | None = None) -> tuple[bytes, str]:
    """The response body and its media type; ``data["timings"]["encode_ms"]`` gets the encoding time.

    ``keep`` stores the result for its links and returns its id (JSON answers that link artifacts).
    """
    start = time.perf_counter()
    if wanted.artifact is not None:
        content, media_type = _artifact(result, wanted)
    elif wanted.media_type == PNG:
        if not result.images:
            raise Problem(406, "not_acceptable", "this result has no picture; ask for application/json")
        content, media_type = encode_artifact(result, _main(result), fast=True).content, PNG
    else:
        return _json(result, wanted.embed, keep), JSON
    _record_encode_time(result, start)
    return content, media_type


def _artifact(result: Result, wanted: Wanted) -> tuple[bytes, str]:
    name = wanted.artifact
    if not has_artifact(result, name):
        names = [*result.images, *result.arrays]
        raise Problem(404, "unknown_artifact", f"no artifact {name!r}; this result has {', '.join(names) or 'none'}")
    artifact = encode_artifact(result, name, fast=True)
    if _choose(wanted.accept, [artifact.media_type]) is None:
        raise Problem(406, "not_acceptable", f"artifact {name!r} is {artifact.media_type}, not {wanted.accept}")
    return artifact.content, artifact.media_type


def _main(result: Result) -> str | None:
    return result.main if result.main is not None else next(iter(result.images), None)


def _record_encode_time(result: Result, start: float) -> None:
    result.data.setdefault("timings", {})["encode_ms"] = round((time.perf_counter() - start) * 1000, 3)


def _json(result: Result, embed: frozenset[str] | None, keep: Callable[[Result], str] | None) -> bytes:
    return answer_json(result_body(result, embed, keep))


def answer_json(body: dict) -> bytes:
    """An inline answer's compact JSON (results are checked finite before: a NaN here is a bug, not null)."""
    return json.dumps(body, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode("utf-8")


def result_body(result: Result, embed: frozenset[str] | None, keep: Callable[[Result], str] | None) -> dict:
    """The JSON answer for one result: the artifacts named by ``embed`` in base64, the others linked."""
    start = time.perf_counter()
    main = _main(result)
    names = [*result.images, *result.arrays]
    embedded = set(names) if embed is None or keep is None else {name for name in names if name in embed or (name == main and "main" in embed)}
    result_id = keep(result) if len(embedded) < len(names) else None
    artifacts = []
    for name in names:
        if name in embedded:
            artifact = encode_artifact(result, name, fast=True)
            artifacts.append({**artifact.describe(), "data_base64": base64.b64encode(artifact.content).decode("ascii")})
        else:
            artifacts.append({**_describe(result, name), "url": f"/v1/results/{result_id}/{name}"})
    _record_encode_time(result, start)
    data = result.data
    return {"method": data.get("method"), "model": data.get("model"), "main": main, "data": data, "artifacts": artifacts}


def _describe(result: Result, name: str) -> dict:
    """What :meth:`engine.encoding.Artifact.describe` says, without encoding anything."""
    if name in result.images:
        image = result.images[name]
        return {"name": name, "kind": "image", "media_type": PNG, "width": image.width, "height": image.height}
    array = np.asarray(result.arrays[name])
    return {"name": name, "kind": "array", "media_type": NPY, "shape": list(array.shape), "dtype": array.dtype.str}
