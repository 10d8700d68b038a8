"""The optimisation toolkit: objectives, transforms, image parameterisations,
optimisers and the render loop they share."""

import pytest
import torch

from engine.errors import Cancelled
from engine.hooks import hook_count
from engine.imaging import quantize
from engine.optim import objectives as obj
from engine.optim.loop import ImageParam, features_of, render
from engine.optim.optimizers import normalized_descent, sign_descent
from engine.optim.params import bounded_perturbation, pixels, quantized, start_image
from engine.optim.transforms import jitter, pad, random_rotate, random_scale

SIZE = (64, 64)

# Every objective kind, built for efficientnet_lite0.
OBJECTIVES = {
    "class_logit": lambda: obj.class_logit(130),
    "class_log_prob": lambda: obj.class_log_prob(130),
    "layer": lambda: obj.layer_mean("blocks.3"),
    "channel": lambda: obj.channel("blocks.3", 7),
    "neuron": lambda: obj.neuron("blocks.3", 7),
    "deepdream": lambda: obj.deepdream("blocks.3"),
    "l2": lambda: obj.l2(0.5),
}


def noise_image() -> torch.Tensor:
    return torch.rand(1, 3, *SIZE, generator=torch.Generator().manual_seed(7))


# -- objectives ---------------------------------------------------------------------------


@pytest.mark.parametrize("kind", sorted(OBJECTIVES))
def test_each_objective_falls_over_five_adam_steps(kind, efficientnet):
    rendered = render(efficientnet, pixels(noise_image()), OBJECTIVES[kind](), steps=5, lr=0.05)
    assert len(rendered.losses) == 5
    assert rendered.losses[-1] < rendered.losses[0], rendered.losses
    assert hook_count(efficientnet) == 0


def test_objectives_read_the_right_numbers():
    acts = torch.arange(2 * 3 * 5 * 5, dtype=torch.float32).view(2, 3, 5, 5)
    logits = torch.tensor([[1.0, 2.0, 3.0], [0.0, 0.0, 5.0]])
    feats = {"a": acts, obj.OUTPUT: logits}
    image = torch.full((1, 3, 2, 2), 0.25)
    assert obj.class_logit(1)(feats, image) == -1.0  # mean over the batch: (2 + 0) / 2
    assert obj.channel("a", 1)(feats, image) == -acts[:, 1].mean()
    assert obj.layer_mean("a")(feats, image) == -acts.mean()
    assert obj.neuron("a", 2)(feats, image) == -acts[:, 2, 2, 2].mean()
    assert obj.neuron("a", 2, y=0, x=4)(feats, image) == -acts[:, 2, 0, 4].mean()
    assert obj.l2(0.5)(feats, image) == pytest.approx(0.0625)
    per_image = obj.class_log_prob([0, 2])(feats, image)
    expected = -(logits.log_softmax(-1)[0, 0] + logits.log_softmax(-1)[1, 2]) / 2
    assert per_image == pytest.approx(float(expected))


def test_deepdream_gradient_is_the_activation():
    acts = torch.randn(1, 4, 3, 3, requires_grad=True)
    obj.deepdream("a")({"a": acts}, None).backward()
    torch.testing.assert_close(acts.grad, -2 * acts.detach() / acts.numel())


def test_objectives_combine_with_weights_and_union_their_layers():
    feats = {"a": torch.ones(1, 2, 2, 2), obj.OUTPUT: torch.tensor([[4.0, 1.0]])}
    combined = 2 * obj.class_logit(0) - 0.5 * obj.channel("a", 1) + 3
    assert combined.layers == {"a", obj.OUTPUT}
    assert combined(feats, None) == pytest.approx(2 * -4.0 - 0.5 * -1.0 + 3)
    with pytest.raises(TypeError):
        obj.class_logit(0) * obj.class_logit(1)


def test_natural_statistics_measures_each_norms_input_in_running_units():
    norm = torch.nn.BatchNorm2d(2, eps=0.0).eval()
    norm.running_mean.copy_(torch.tensor([1.0, -1.0]))
    norm.running_var.copy_(torch.tensor([4.0, 1.0]))
    x = torch.zeros(1, 2, 2, 2)
    x[0, 0] = torch.tensor([[3.0, -1.0], [-1.0, 3.0]])  # mean 1, standard deviation 2: exactly the running ones
    x[0, 1] = 1.0  # mean 2 running deviations above, no spread (a whole running deviation short): 2^2 + 1^2
    prior = obj.natural_statistics({"bn": norm})
    assert prior.layers == {obj.INPUT_OF + "bn"}
    assert float(prior({obj.INPUT_OF + "bn": x}, x)) == pytest.approx((0 + 5) / 2)
    # a second layer of three channels, each one running deviation above with the running spread (1^2 + 0 each):
    # the layers count the same whatever their width, so the prior is the mean of 5 / 2 and 1
    wide = torch.nn.BatchNorm2d(3, eps=0.0).eval()
    y = torch.tensor([[2.0, 0.0], [0.0, 2.0]]).expand(1, 3, 2, 2)  # mean 1, standard deviation 1 (running: 0, 1)
    both = obj.natural_statistics({"bn": norm, "wide": wide})
    assert float(both({obj.INPUT_OF + "bn": x, obj.INPUT_OF + "wide": y}, x)) == pytest.approx((5 / 2 + 1) / 2)


@pytest.mark.parametrize("dim", [-1, 1])
def test_channel_moments_match_torch_and_their_gradients_are_exact(dim):
    x = torch.randn(2, 3, 17, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) * 3 + 1
    mean, var = obj.ChannelMoments.apply(x, dim)
    torch_var, torch_mean = torch.var_mean(x, dim=dim, correction=0)
    torch.testing.assert_close((mean, var), (torch_mean, torch_var))
    assert torch.autograd.gradcheck(lambda t: obj.ChannelMoments.apply(t, dim), (x.requires_grad_(True),))


def test_channel_moments_of_a_map_are_the_same_in_either_memory_layout():
    x = torch.randn(2, 5, 6, 7, dtype=torch.float64, generator=torch.Generator().manual_seed(1)) * 2 - 1
    torch_var, torch_mean = torch.var_mean(x, dim=(2, 3), correction=0)
    for layout in (torch.contiguous_format, torch.channels_last):
        mean, var = obj.channel_moments(x.contiguous(memory_format=layout))
        torch.testing.assert_close((mean, var), (torch_mean, torch_var))


def test_natural_statistics_reads_the_norms_inputs_and_prefers_a_photo_to_noise(efficientnet, chelsea):
    from engine.imaging import fit_image, to_tensor
    from engine.synthesis.class_visualization import batch_norms

    norms = batch_norms(efficientnet)
    assert len(norms) == 49 and "bn1" in norms  # every batch norm of the network, the stem's first
    prior = obj.natural_statistics(norms)
    photo = to_tensor(fit_image(chelsea, (224, 224)))
    feats = features_of(efficientnet, prior, photo)
    stem = efficientnet.layer("conv_stem")(efficientnet.normalize(photo))  # what bn1 is given
    torch.testing.assert_close(feats[obj.INPUT_OF + "bn1"], stem)
    noise = torch.rand(1, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    assert float(prior(feats, photo)) < 0.7 * float(prior(features_of(efficientnet, prior, noise), noise))
    rendered = render(efficientnet, pixels(noise_image()), prior, steps=5, lr=0.05)
    assert rendered.losses[-1] < rendered.losses[0], rendered.losses
    assert hook_count(efficientnet) == 0


# -- transforms ---------------------------------------------------------------------------


def test_jitter_is_a_roll_and_repeats_with_the_same_seed():
    image = noise_image()
    a = [jitter(6, torch.Generator().manual_seed(3))(image) for _ in range(2)]
    torch.testing.assert_close(a[0], a[1])
    assert a[0].shape == image.shape
    assert torch.equal(a[0].flatten().sort().values, image.flatten().sort().values)
    shifted = [jitter(6, torch.Generator().manual_seed(s))(image) for s in range(6)]
    assert any(not torch.equal(s, image) for s in shifted)
    assert torch.equal(jitter(0)(image), image)


def test_pad_scale_and_rotate_shapes():
    image = noise_image()
    assert pad(5)(image).shape == (1, 3, 74, 74)
    padded = pad(2, mode="constant", value=0.5)(image)
    assert torch.all(padded[..., :2, :] == 0.5)
    assert random_scale([0.5])(image).shape == (1, 3, 32, 32)
    assert random_scale([1.25])(image).shape == (1, 3, 80, 80)
    torch.testing.assert_close(random_rotate([90])(image), torch.rot90(image, 1, (-2, -1)))
    assert torch.equal(random_rotate([0])(image), image)


# -- image parameterisations --------------------------------------------------------------


def test_start_images(efficientnet, vgg19):
    assert torch.equal(start_image("zeros", (8, 8), efficientnet), torch.zeros(1, 3, 8, 8))
    torch.testing.assert_close(vgg19.mean_colour().flatten(), torch.tensor([123.68, 116.779, 103.939]) / 255)
    mean = start_image("mean", (8, 8), efficientnet)
    torch.testing.assert_close(mean[0, :, 3, 5], torch.tensor([0.485, 0.456, 0.406]))
    noisy = [start_image("noise", (8, 8), efficientnet, torch.Generator().manual_seed(1)) for _ in range(2)]
    assert torch.equal(noisy[0], noisy[1]) and not torch.equal(noisy[0], mean)
    assert noisy[0].min() >= 0 and noisy[0].max() <= 1


def test_clipped_pixels_brighten_a_black_start_and_stay_valid(efficientnet):
    init = torch.zeros(1, 3, *SIZE)
    rendered = render(efficientnet, pixels(init), obj.channel("blocks.3", 7), steps=3, lr=0.1)
    assert torch.equal(init, torch.zeros_like(init))  # the caller's tensor is untouched
    assert rendered.image.max() > 0.2
    assert rendered.image.min() >= 0 and rendered.image.max() <= 1


def test_sigmoid_pixels_start_at_init_and_stay_inside_the_range():
    init = noise_image()
    param = pixels(init, valid="sigmoid")
    torch.testing.assert_close(param.image_fn(), init.clamp(1e-3, 1 - 1e-3))
    with torch.no_grad():
        param.params[0].mul_(100)
        assert 0 <= float(param.image_fn().min()) and float(param.image_fn().max()) <= 1


def test_quantized_rounds_forward_and_passes_gradients_through():
    x = torch.tensor([0.1, 0.5004, 0.9], requires_grad=True)
    y = quantized(x)
    torch.testing.assert_close(y, quantize(x.detach()))
    (y * torch.tensor([1.0, 2.0, 3.0])).sum().backward()
    torch.testing.assert_close(x.grad, torch.tensor([1.0, 2.0, 3.0]))


def test_bounded_perturbation_stays_in_budget_on_the_8_bit_grid(efficientnet):
    originals = quantize(noise_image().repeat(2, 1, 1, 1))
    param = bounded_perturbation(originals, 3 / 255, random_start=True, generator=torch.Generator().manual_seed(0))
    rendered = render(efficientnet, param, obj.class_log_prob(130), steps=4, optimizer="sign", lr=2 / 255)
    steps_255 = (rendered.image - originals) * 255
    assert rendered.image.shape == originals.shape
    torch.testing.assert_close(steps_255, steps_255.round(), atol=1e-3, rtol=0)
    assert steps_255.abs().max() <= 3 + 1e-3


# -- optimisers and the loop --------------------------------------------------------------


def test_fixed_size_optimisers_take_exact_steps():
    p = torch.tensor([1.0, 1.0, 1.0], requires_grad=True)
    p.grad = torch.tensor([0.5, -2.0, 0.0])
    sign_descent([p], lr=0.1).step()
    torch.testing.assert_close(p.detach(), torch.tensor([0.9, 1.1, 1.0]))
    q = torch.tensor([0.0, 0.0], requires_grad=True)
    q.grad = torch.tensor([1.0, -3.0])
    normalized_descent([q], lr=0.5).step()
    torch.testing.assert_close(q.detach(), torch.tensor([-0.25, 0.75]))


def test_progress_reports_loss_and_previews_every_n_steps(efficientnet):
    calls = []
    render(
        efficientnet, pixels(noise_image()), obj.l2(0.5), steps=5, preview_every=2,
        progress=lambda step, total, preview=None, **info: calls.append((step, total, preview is not None, info)),
    )
    assert [(s, t, p) for s, t, p, _ in calls] == [(1, 5, False), (2, 5, True), (3, 5, False), (4, 5, True), (5, 5, True)]
    assert all(isinstance(info["loss"], float) for *_, info in calls)


@pytest.mark.parametrize("optimizer", ["adam", "lbfgs"])
def test_stop_when_returns_the_image_its_loss_was_measured_on(optimizer, efficientnet):
    objective = obj.channel("blocks.3", 7)
    rendered = render(
        efficientnet, pixels(noise_image()), objective, steps=10, optimizer=optimizer, lr=0.05,
        stop_when=lambda step, loss: step == 3,
    )
    assert rendered.steps == 3 and len(rendered.losses) == 3
    with torch.no_grad():
        loss = objective(features_of(efficientnet, objective, rendered.image), rendered.image)
    assert float(loss) == pytest.approx(rendered.losses[-1], rel=1e-4)


def test_no_hooks_left_after_a_cancelled_run(efficientnet):
    def cancel(step, total, preview=None, **info):
        raise Cancelled()

    with pytest.raises(Cancelled):
        render(efficientnet, pixels(noise_image()), obj.channel("blocks.3", 0), steps=3, progress=cancel)
    assert hook_count(efficientnet) == 0


def test_constrain_runs_after_every_step(efficientnet):
    values = noise_image().requires_grad_(True)
    param = ImageParam([values], lambda: values, lambda: values.clamp_(0.4, 0.6))
    rendered = render(efficientnet, param, obj.class_logit(130), steps=2, lr=0.5)
    assert rendered.image.min() >= 0.4 and rendered.image.max() <= 0.6
