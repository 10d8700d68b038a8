"""KServe's V1 protocol verbs: ``POST /v1/models/{name}:predict`` and ``POST /v1/models/{name}:explain``.

Thin: the body is read here, everything else (:mod:`api.kserve`) runs in the inline pool with the
inline route's key, tenant, budget and time limit. ``GET /v1/models/{name}`` stays the model's
description (:mod:`api.routes.models`); a colon route never takes its paths, nor they a colon route's.
"""

import asyncio
import time
from typing import Any

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, ConfigDict, Field, create_model
from pydantic.json_schema import models_json_schema

from api import kserve
from api.deps import InlinePoolDep, ModelSourceDep, SettingsDep, TenantDep
from api.inline_progress import InlineProgress, until_done_or_gone
from api.routes.inline import Caller, server_timing

REF = "#/components/schemas/{model}"
DOCS = "https://kserve.github.io/website/docs/concepts/architecture/data-plane/v1-protocol"


class KServeB64(BaseModel):
    model_config = ConfigDict(extra="forbid")
    b64: str = Field(description="the file (PNG, JPEG, WEBP, GIF, BMP or TIFF) in standard base64")


class KServeImageInstance(BaseModel):
    """KServe's custom predictor and transformer examples."""

    model_config = ConfigDict(extra="forbid")
    image: KServeB64
    key: Any = Field(None, description="anything; repeated in this instance's answers")


class KServeImageBytesInstance(BaseModel):
    """KServe's TensorFlow and Triton examples (TF Serving's convention)."""

    model_config = ConfigDict(extra="forbid")
    image_bytes: KServeB64
    key: Any = Field(None, description="anything; repeated in this instance's answers")


class KServeDataInstance(BaseModel):
    """KServe's TorchServe examples (a file in base64), or KServe's custom model's array of pixel values."""

    model_config = ConfigDict(extra="forbid")
    data: str | list[list[float]] | list[list[list[float]]]
    key: Any = Field(None, description="anything; repeated in this instance's answers")


class KServeB64Instance(KServeB64):
    """TF Serving's binary value, alone."""

    key: Any = Field(None, description="anything; repeated in this instance's answers")


PixelValues = list[list[list[float]]] | list[list[float]]
InstanceForm = KServeImageInstance | KServeImageBytesInstance | KServeDataInstance | KServeB64Instance | PixelValues


def _request_model(name: str, parameters: type[BaseModel]) -> type[BaseModel]:
    pictures = f"pictures: {kserve.FORMS}; pixel values are [height][width][3] (RGB) or [height][width] (grey)"
    return create_model(
        name,
        __config__=ConfigDict(extra="forbid"),
        __doc__=f"KServe's V1 request ({DOCS}): instances, or inputs (the same), and parameters.",
        instances=(list[InstanceForm] | None, Field(None, min_length=1, description=pictures)),
        inputs=(list[InstanceForm] | None, Field(None, min_length=1, description="the same as instances; send one of the two")),
        parameters=(parameters | None, Field(None, description="options (KServe's V1 protocol names none; the V2 protocol's name)")),
    )


class KServeClassEntry(BaseModel):
    index: int
    label: str
    probability: float
    score: float | None = Field(None, description="the logit (the explained class only)")


class KServePrediction(BaseModel):
    """One instance's classification: the top-1 class and the top classes, as POST /v1/classify's data.top."""

    index: int
    label: str
    probability: float
    top: list[KServeClassEntry]
    key: Any = Field(None, description="the instance's key, when it had one")


class KServeExplanation(BaseModel):
    """One instance's attribution: the raw map (POST /v1/<method>'s map artifact, unscaled) and what it explains."""

    method: str
    target: dict[str, Any] | None = Field(description="the class explained (index, label, probability, score), or the unit")
    layer: str | None = None
    sign: str | None = Field(None, description="absolute, positive or all (signed)")
    shape: list[int] = Field(description="[height, width] of the map: the picture as the network saw it (after fit)")
    map: list[list[float]] = Field(description="the map's float32 values, row by row")
    key: Any = Field(None, description="the instance's key, when it had one")


class KServePredictAnswer(BaseModel):
    """KServe's V1 predict answer: one prediction per instance, in order."""

    predictions: list[KServePrediction]


class KServeExplainAnswer(BaseModel):
    """KServe's V1 explain answer: one explanation (and one prediction) per instance, in order."""

    predictions: list[KServePrediction] | None = Field(None, description="absent for a model with no classes")
    explanations: list[KServeExplanation]


EXAMPLE_PICTURE = {"image": {"b64": "<a PNG or JPEG file in base64>"}}


def kserve_router() -> tuple[APIRouter, dict[str, dict]]:
    """The router and the schema components its request bodies refer to (made after plugins are loaded)."""
    router = APIRouter(prefix="/v1/models", tags=["kserve"])
    requests = {"predict": _request_model("KServePredictRequest", kserve.KServePredictParameters),
                "explain": _request_model("KServeExplainRequest", kserve.explain_parameters())}
    refs, definitions = models_json_schema([(model, "validation") for model in requests.values()], ref_template=REF)
    examples = {
        "predict": {"instances": [EXAMPLE_PICTURE], "parameters": {"top_k": 3}},
        "explain": {"instances": [EXAMPLE_PICTURE], "parameters": {"method": "gradcam", "target_class": "tabby"}},
    }
    summaries = {
        "predict": "KServe V1 predict: the top classes of each instance (classify), in KServe's answer shape",
        "explain": "KServe V1 explain: an attribution map of each instance (saliency unless parameters.method says), "
                   "with its predictions",
    }
    answers = {"predict": KServePredictAnswer, "explain": KServeExplainAnswer}
    for verb in ("predict", "explain"):
        router.add_api_route(
            f"/{{name}}:{verb}",
            _endpoint(verb),
            methods=["POST"],
            name=f"kserve_{verb}",
            summary=summaries[verb],
            description=f"{summaries[verb]}. The protocol: {DOCS}. `name` is a KServe model name mapped by the "
                        "kserve_models setting, or a model name from GET /v1/models. docs/kserve.md tells the forms and options.",
            response_class=Response,
            responses={200: {"model": answers[verb], "description": "one answer per instance, in order"}},
            openapi_extra={"requestBody": {"required": True, "content": {"application/json": {
                "schema": refs[(requests[verb], "validation")], "example": examples[verb]}}}},
        )
    return router, definitions.get("$defs", {})


def _endpoint(verb: kserve.Verb):
    async def endpoint(
        name: str, request: Request, settings: SettingsDep, pool: InlinePoolDep, tenant: TenantDep, models: ModelSourceDep,
    ) -> Response:
        start = time.perf_counter()
        body = await request.body()
        progress = InlineProgress(settings.inline_time_limit_seconds)
        work = asyncio.ensure_future(pool.run(
            kserve.answer, verb, name, body, settings, Caller(tenant, models), progress, key=request.state.api_key,
        ))
        content, method, timings = await until_done_or_gone(request, work, progress)
        request.app.state.metrics.inline.labels(method).observe(time.perf_counter() - start)
        return Response(content, media_type="application/json", headers={"Server-Timing": server_timing(timings)})

    endpoint.__name__ = f"kserve_{verb}"
    return endpoint
