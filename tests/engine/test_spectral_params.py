"""Fourier (1/f, decorrelated colour) and MACO (phase-only) image parameterisations."""

import pytest
import torch

from engine.hooks import hook_count
from engine.optim import objectives as obj
from engine.optim.loop import render
from engine.optim.spectral import fourier, frequency_scale, maco, natural_magnitude
from engine.optim.transforms import centre_zoom, robustness_transforms

SIZE = (64, 64)
PARAMS = {
    "fourier": lambda g: fourier(SIZE, generator=g),
    "fourier_rgb": lambda g: fourier(SIZE, decorrelate=False, generator=g),
    "fourier_decay_1.5": lambda g: fourier(SIZE, generator=g, decay=1.5),  # class_visualization's default
    "maco": lambda g: maco(SIZE, generator=g),
}


@pytest.mark.parametrize("name", sorted(PARAMS))
def test_loss_falls_over_five_steps_and_the_image_stays_in_range(name, efficientnet):
    param = PARAMS[name](torch.Generator().manual_seed(0))
    rendered = render(efficientnet, param, obj.class_logit(130), steps=5, lr=0.05)
    assert rendered.losses[-1] < rendered.losses[0], rendered.losses
    assert rendered.image.shape == (1, 3, *SIZE)
    assert 0 <= float(rendered.image.min()) and float(rendered.image.max()) <= 1
    assert hook_count(efficientnet) == 0


@pytest.mark.parametrize("name", sorted(PARAMS))
def test_same_seed_same_picture(name, efficientnet):
    def run(seed):
        g = torch.Generator().manual_seed(seed)
        return render(efficientnet, PARAMS[name](g), obj.class_logit(130), steps=2, transforms=robustness_transforms("standard", g)).image

    assert torch.equal(run(3), run(3))
    assert not torch.equal(run(3), run(4))


def test_fourier_starts_exactly_from_a_given_photo(chelsea):
    from engine.imaging import fit_image, to_tensor

    photo = to_tensor(fit_image(chelsea, SIZE))
    for decorrelate, decay in ((True, 1.0), (False, 1.0), (True, 1.5)):
        image = fourier(SIZE, facets=2, decorrelate=decorrelate, init=photo, decay=decay).image_fn()
        assert image.shape == (2, 3, *SIZE)
        assert (image - photo.clamp(1e-3, 1 - 1e-3)).abs().max() < 1e-4


def test_frequency_scale_is_1_over_f():
    scale = frequency_scale(8, 8)
    assert scale[0, 1] / scale[0, 2] == pytest.approx(2.0)  # f = 1/8 vs 2/8
    assert scale[0, 1] / scale[1, 1] == pytest.approx(2**0.5)  # f = 1/8 vs sqrt(2)/8
    assert scale[0, 1] == pytest.approx(8 * 8)  # 1/f times sqrt(H W)
    assert scale[0, 0] == scale[0, 1]  # the DC bin is clamped to the lowest frequency
    steeper = frequency_scale(8, 8, decay=1.5)
    assert steeper[0, 1] / steeper[0, 2] == pytest.approx(2**1.5)  # 1/f^1.5


def test_maco_keeps_the_natural_amplitude_and_learns_only_the_phase():
    magnitude = natural_magnitude(*SIZE)
    assert magnitude.shape == (3, 64, 33)
    # natural photos: amplitude falls with frequency (about 1/f)
    assert magnitude[0, 0, 1] > 4 * magnitude[0, 0, 16]
    param = maco(SIZE, generator=torch.Generator().manual_seed(0))
    assert [p.shape for p in param.params] == [(1, 3, 64, 33)]


def test_centre_zoom_keeps_the_size_and_zooms_into_the_middle():
    image = torch.zeros(1, 3, 40, 40)
    image[..., 15:25, 15:25] = 1.0
    zoomed = centre_zoom(0.5, torch.Generator().manual_seed(0))
    outs = [zoomed(image) for _ in range(8)]
    assert all(out.shape == image.shape for out in outs)
    assert max(float(out.mean()) for out in outs) > float(image.mean())  # the bright centre grows
