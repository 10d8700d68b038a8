"""train_style_model: a Johnson et al. network trained once through the shared loop, then applied
in one pass; several styles in one network (conditional instance norm) and mixes of them."""

import json

import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data

from engine.errors import InvalidParams, UnknownLayer
from engine.hooks import hook_count
from engine.imaging import fit_image, to_tensor
from engine.run import run_method
from engine.synthesis.fast_style import PerceptualLoss, StyleModelConfig, Transformer, build, one_hot, style_mix, stylise

# A shallow loss network keeps these trainings to seconds on a CPU.
SHALLOW = {"content_layer": "block2_relu2", "style_layers": ["block1_relu1", "block2_relu1", "block3_relu1"]}
TINY = {"size": 48, "batch_size": 2, "base_channels": 8, "residual_blocks": 1, "lr": 0.02, "preview_every": 0, **SHALLOW}


@pytest.fixture(scope="module")
def training(chelsea, astronaut) -> list[Image.Image]:
    return [chelsea, astronaut, Image.fromarray(data.rocket())]


@pytest.fixture(scope="module")
def held_out(coffee, sample_images) -> list[Image.Image]:
    return [coffee, *sample_images]  # none of them is in the training collection


@pytest.fixture(scope="module")
def styles() -> list[Image.Image]:
    return [Image.fromarray(data.immunohistochemistry()), Image.fromarray(data.hubble_deep_field())]


def network(result) -> Transformer:
    net = build(StyleModelConfig.model_validate(result.data["style_model"]))
    net.load_state_dict(result.tensors, strict=True)
    return net


def held_out_loss(vgg19, net, images, style, mix, weights=(1.0, 10.0)) -> float:
    loss = PerceptualLoss(vgg19, to_tensor(fit_image(style, (48, 48), "crop")), SHALLOW["content_layer"], SHALLOW["style_layers"])
    batch = torch.cat([to_tensor(fit_image(image, (48, 48), "crop")) for image in images])
    with torch.no_grad():
        content, style_part = loss.evaluate(batch, net(batch, mix))
    return weights[0] * content + weights[1] * style_part


LAYOUTS = [{"space_to_depth": False, "outer_kernel": 9}, {"space_to_depth": True, "outer_kernel": 3}, {"space_to_depth": True, "outer_kernel": 9}]


@pytest.mark.parametrize("layout", LAYOUTS)
def test_transformer_keeps_any_size_and_stays_in_pixel_range(layout):
    torch.manual_seed(0)
    out = Transformer(width=4, blocks=1, styles=2, **layout)(torch.rand(2, 3, 37, 50), torch.tensor([0.3, 0.7]))
    assert out.shape == (2, 3, 37, 50) and 0 <= out.min() and out.max() <= 1
    net = Transformer(width=4, blocks=1, **layout).eval()
    for size in ((1, 1), (3, 9), (7, 16), (15, 15)):  # below the smallest side its padding takes: worked larger, resized back
        assert stylise(net, Image.new("RGB", size, (90, 160, 30)), one_hot(0, 1), 1024).size == size


def test_a_config_without_layout_fields_is_johnsons_layout_so_old_weights_load():
    old_record = {"width": 4, "blocks": 1, "styles": 1, "style_names": ["only"]}  # as stored before the layout knobs
    config = StyleModelConfig.model_validate(old_record)
    assert (config.space_to_depth, config.outer_kernel) == (False, 9)
    old_weights = Transformer(width=4, blocks=1).state_dict()  # the layout stored models were trained with
    assert old_weights["layers.0.conv.weight"].shape == (4, 3, 9, 9)
    build(config).load_state_dict(old_weights, strict=True)
    with pytest.raises(RuntimeError, match="size mismatch"):
        build(config.model_copy(update={"space_to_depth": True})).load_state_dict(old_weights, strict=True)


def test_space_to_depth_runs_no_layer_at_full_resolution():
    net = Transformer(width=4, blocks=1, space_to_depth=True, outer_kernel=3).eval()
    sides = []
    hooks = [m.register_forward_hook(lambda m, i, o: sides.append(o.shape[-1])) for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    try:
        net(torch.rand(1, 3, 64, 64))
    finally:
        for hook in hooks:
            hook.remove()
    assert max(sides) == 32 and min(sides) == 8  # residual blocks at 1/8 of the picture's side


def test_bad_layouts_are_invalid_params(chelsea):
    for bad in ({"outer_kernel": 4}, {"outer_kernel": 11}, {"space_to_depth": "sometimes"}):
        with pytest.raises(InvalidParams, match="outer_kernel|space_to_depth"):
            run_method("train_style_model", "vgg19", {"content": [chelsea], "style": [chelsea]}, {**TINY, "steps": 1, **bad}, device="cpu")


def test_training_lowers_the_loss_on_pictures_it_never_saw(vgg19, training, held_out, styles):
    weights = [p.clone() for p in vgg19.parameters()]
    seen = []
    params = {**TINY, "steps": 40, "preview_every": 20}
    run = lambda p, progress=None: run_method("train_style_model", "vgg19", {"content": training, "style": styles[:1]}, p,
                                              progress or (lambda *a, **k: None), device="cpu")  # fmt: skip
    start = run({**params, "steps": 1, "preview_every": 0})  # same seed: the network as training found it, after one step
    trained = run(params, lambda step, total, preview=None, **info: seen.append((step, total, preview)))
    mix = one_hot(0, 1)
    before, after = (held_out_loss(vgg19, network(r), held_out, styles[0], mix) for r in (start, trained))
    assert after < 0.7 * before, (before, after)
    assert [s[0] for s in seen] == list(range(1, 41)) and [s[0] for s in seen if s[2] is not None] == [20, 40]
    assert trained.data["steps"] == 40 and len(trained.data["losses"]) == 40
    assert trained.images["examples"].size[0] > 128 and "loss_curve" in trained.images
    json.dumps(trained.data)
    assert hook_count(vgg19) == 0
    assert all(torch.equal(a, b) for a, b in zip(weights, vgg19.parameters()))


def test_two_styles_in_one_network_and_a_mix_are_three_different_pictures(vgg19, training, held_out, styles):
    result = run_method("train_style_model", "vgg19", {"content": training, "style": styles}, {**TINY, "steps": 12, "style_names": ["ihc", "hubble"]}, device="cpu")
    config = StyleModelConfig.model_validate(result.data["style_model"])
    assert config.styles == 2 and config.style_names == ["ihc", "hubble"]
    net = network(result)
    photo = held_out[0].resize((64, 48))
    first, second, mixed = (
        np.asarray(stylise(net, photo, style_mix(config, style, weights), 512), dtype=np.float32)
        for style, weights in ((0, None), (1, None), (None, [1, 1]))
    )
    assert first.shape == second.shape == mixed.shape == (48, 64, 3)
    for a, b in ((first, second), (first, mixed), (second, mixed)):
        assert np.abs(a - b).mean() > 2.0  # grey levels


def test_bad_style_choices_are_invalid_params():
    config = StyleModelConfig(width=4, blocks=1, styles=2, style_names=["a", "b"])
    for style, weights in ((2, None), (None, [1.0]), (None, [0.0, 0.0]), (None, [-1.0, 2.0]), (0, [1.0, 1.0])):
        with pytest.raises(InvalidParams):
            style_mix(config, style, weights)


def test_loss_layers_must_exist_in_the_loss_network(efficientnet, chelsea):
    vgg_layers = {"content_layer": "block4_relu2", "style_layers": ["block1_relu1", "block2_relu1"]}
    with pytest.raises(UnknownLayer, match="block4_relu2"):
        run_method("train_style_model", "efficientnet_lite0", {"content": [chelsea], "style": [chelsea]}, {**TINY, **vgg_layers, "steps": 1},
                   device="cpu")
    assert hook_count(efficientnet) == 0
