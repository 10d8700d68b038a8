"""Every registered method runs once as a job through the real stack: upload -> submit -> follow
-> succeeded -> its main artifact decodes as a PNG of the expected size.

Feature vectors are cached by content, so the collection methods' cases use different sizes: a
cached case would run no forward pass and report no progress.

CASES holds one entry per method with tiny params (small pictures, 1-4 steps) so each job takes
a few seconds on CPU. A registered method without an entry fails, so a new method cannot escape
this test; an entry whose method is not registered (its branch has not merged yet) is skipped.
"""

import io
from dataclasses import dataclass

import pytest
from PIL import Image

from engine.registry import all_methods
from tests.e2e import plugins as test_plugins
from tests.e2e.conftest import start_stack, stack_env
from worker.jobs import FINISHED

EFFICIENTNET, VGG19 = "efficientnet_lite0", "vgg19"


@dataclass(frozen=True)
class Case:
    model: str
    inputs: dict[str, str | list[str]]  # slot -> photo name(s) from PHOTOS
    params: dict
    size: tuple[int, int]  # (width, height) of the main picture
    total: int | None  # the progress total it reports; None: it reports no progress


CASES = {
    # inspect
    "classify": Case(EFFICIENTNET, {"image": "chelsea"}, {"top_k": 3}, (224, 224), None),
    "activations": Case(EFFICIENTNET, {"image": "chelsea"}, {"size": 64, "channels": [0, 1, 2, 3], "tile_size": 16}, (35, 35), None),
    "filters": Case(EFFICIENTNET, {}, {"max_filters": 4, "tile_size": 8}, (21, 21), None),
    "embedding": Case(
        EFFICIENTNET, {"images": ["chelsea", "coffee", "astronaut"]}, {"size": 32, "projection": "pca", "canvas": 200, "tile_size": 16}, (200, 200), 1
    ),
    "embed_collection": Case(EFFICIENTNET, {"images": ["chelsea", "coffee", "astronaut"]}, {"size": 40}, (100, 34), 1),
    "channel_overview": Case(EFFICIENTNET, {"images": ["chelsea", "coffee"]}, {"size": 64, "top_k": 2, "tile_size": 16}, (35, 32), 1),
    "max_activating_patches": Case(EFFICIENTNET, {"images": ["chelsea", "coffee"]}, {"size": 64, "top_k": 2, "tile_size": 16}, (35, 32), 1),
    "nearest_neighbors": Case(
        EFFICIENTNET, {"images": ["chelsea", "coffee", "astronaut"], "query": "china"}, {"size": 48, "top_k": 2, "tile_size": 16}, (52, 32), 1
    ),
    # fool
    "fooling_image": Case(EFFICIENTNET, {"image": "chelsea"}, {"target_class": "ostrich", "steps": 2}, (224, 224), 2),
    "adversarial_untargeted": Case(EFFICIENTNET, {"image": "chelsea"}, {"steps": 2}, (224, 224), 2),
    "universal_perturbation": Case(EFFICIENTNET, {"images": ["chelsea", "coffee"]}, {"steps": 2}, (224, 224), 2),
    # synthesise
    "class_visualization": Case(EFFICIENTNET, {}, {"objectives": [{"kind": "class", "target_class": "ostrich"}], "size": 64, "steps": 3}, (64, 64), 3),
    "deepdream": Case(VGG19, {"image": "chelsea"}, {"octaves": 1, "steps": 3, "max_side": 64}, (64, 43), 3),
    "train_style_model": Case(
        VGG19,
        {"content": ["chelsea", "astronaut"], "style": ["coffee"]},
        {"steps": 2, "batch_size": 1, "size": 32, "base_channels": 4, "residual_blocks": 1, "content_layer": "block2_relu2",
         "style_layers": ["block1_relu1", "block2_relu1"]},
        (259, 259),
        2,
    ),
    "feature_inversion": Case(VGG19, {"image": "chelsea"}, {"max_side": 32, "steps": 3}, (32, 21), 3),
    "texture_synthesis": Case(VGG19, {"image": "coffee"}, {"max_side": 32, "height": 32, "width": 32, "steps": 3}, (32, 32), 3),
    "style_transfer": Case(VGG19, {"content": "chelsea", "style": ["coffee"]}, {"max_side": 32, "steps": 3, "scales": 1, "coarse_steps": 1}, (32, 21), 3),
    # attribute
    "saliency": Case(EFFICIENTNET, {"image": "chelsea"}, {}, (224, 224), None),
    "guided_backprop": Case(EFFICIENTNET, {"image": "chelsea"}, {}, (224, 224), None),
    "deconvnet": Case(EFFICIENTNET, {"image": "chelsea"}, {}, (224, 224), None),
    "gradcam": Case(EFFICIENTNET, {"image": "chelsea"}, {}, (224, 224), None),
    "occlusion": Case(EFFICIENTNET, {"image": "chelsea"}, {"window": 56, "stride": 56}, (224, 224), 16),
    "smoothgrad": Case(EFFICIENTNET, {"image": "chelsea"}, {"samples": 2, "batch_size": 2}, (224, 224), 2),
    "integrated_gradients": Case(EFFICIENTNET, {"image": "chelsea"}, {"steps": 4, "batch_size": 4}, (224, 224), 4),
    "segmentation": Case(EFFICIENTNET, {"image": "chelsea"}, {"steps": 1}, (224, 224), None),
    "evaluate_attribution": Case(
        EFFICIENTNET, {"images": ["chelsea"]}, {"methods": ["saliency"], "size": 32, "randomization": "none", "deletion_steps": 2}, (560, 300), 1
    ),
}


def registered() -> set[str]:
    """Built-in methods (the plugin's test methods are registered here too once imported; they are not ours)."""
    return {method.name for method in all_methods() if method.run.__module__ != test_plugins.__name__}


@pytest.fixture(scope="module")
def stack(redis_server, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("every-method")
    stack = start_stack(stack_env(redis_server.url, "filesystem", tmp, None), tmp / "worker.log")
    yield stack
    stack.client.close()
    stack.worker.stop()


@pytest.fixture(scope="module")
def photos(stack, chelsea, coffee, astronaut, sample_images) -> dict[str, str]:
    """Real photos, uploaded once: name -> image id."""
    pictures = {"chelsea": chelsea.resize((96, 64)), "coffee": coffee.resize((96, 64)), "astronaut": astronaut.resize((64, 64)),
                "china": sample_images[0].resize((96, 64))}
    return {name: stack.upload(picture) for name, picture in pictures.items()}


def follow(stack, job_id: str) -> tuple[dict, list[dict]]:
    """Poll a job to its end; returns the final record and the progress seen while it ran."""
    seen = []

    def finished(job: dict) -> bool:
        if job["state"] not in FINISHED and job["progress"] and (not seen or seen[-1] != job["progress"]):
            seen.append(job["progress"])
        return job["state"] in FINISHED

    return stack.poll(job_id, finished), seen


@pytest.mark.parametrize("name", sorted(registered() | set(CASES)))
def test_method_runs_as_a_job(name, request):
    if name not in registered():
        pytest.skip(f"method {name!r} is not registered (not merged yet)")
    if name not in CASES:
        pytest.fail(f"method {name!r} has no entry in CASES of {__name__}: add its model, inputs, tiny params, main picture size and progress total")
    case = CASES[name]
    stack, photos = request.getfixturevalue("stack"), request.getfixturevalue("photos")  # started only for a case that runs
    inputs = {slot: [photos[p] for p in names] if isinstance(names, list) else photos[names] for slot, names in case.inputs.items()}
    response = stack.client.post("/v1/jobs", json={"method": name, "model": case.model, "inputs": inputs, "params": case.params})
    assert response.status_code == 202, response.text

    job, running = follow(stack, response.json()["id"])
    assert job["state"] == "succeeded", job["error"]
    assert job["method"] == name and job["result"]["model"] == case.model and "total_ms" in job["result"]["timings"]

    steps = [progress["step"] for progress in running]
    assert steps == sorted(steps) and all(progress["total"] == case.total for progress in running)
    if case.total is None:
        assert job["progress"] is None
    else:
        assert (job["progress"]["step"], job["progress"]["total"], job["progress"]["fraction"]) == (case.total, case.total, 1.0)

    main = [artifact for artifact in job["artifacts"] if artifact["main"]]
    assert len(main) == 1 and main[0]["media_type"] == "image/png", job["artifacts"]
    download = stack.client.get(main[0]["url"])
    assert download.status_code == 200 and download.headers["content-type"] == "image/png"
    picture = Image.open(io.BytesIO(download.content))
    picture.load()  # decodes every pixel
    assert picture.format == "PNG" and picture.size == case.size
