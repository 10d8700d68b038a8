"""Image parameterisations in frequency space, with decorrelated colour.

- ``fourier``: the image is the inverse real FFT of a learnt spectrum scaled by
  1/f, in a decorrelated colour space, squashed into [0, 1] by a sigmoid (Olah,
  Mordvintsev & Schubert 2017, "Feature Visualization", Distill). Gradient
  steps then move all frequencies alike instead of favouring the highest.
- ``maco``: only the phase is learnt; the amplitude spectrum is fixed to the
  mean amplitude of natural photos (Fel et al. 2023, "Unlocking Feature
  Visualization for Deeper Networks with MAgnitude Constrained Optimization",
  https://arxiv.org/abs/2306.06805). The photos are the sample pictures that
  ship with scikit-image and scikit-learn, measured once per size.

Both take a batch size (``facets``) and a seeded generator: same seed, same picture.
"""

from functools import lru_cache

import numpy as np
import torch

from engine.optim.loop import ImageParam

# Square root of ImageNet's colour covariance (from its SVD), as in Lucid; columns scaled to max norm 1.
_COLOUR_SQRT = torch.tensor([[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]])
COLOUR = _COLOUR_SQRT / _COLOUR_SQRT.norm(dim=0).max()


def decorrelated_to_rgb(values: torch.Tensor, decorrelate: bool = True) -> torch.Tensor:
    """(N, 3, H, W) unbounded values in the decorrelated colour space -> RGB in (0, 1)."""
    if decorrelate:
        values = torch.einsum("ij,njhw->nihw", COLOUR.to(values), values)
    return values.sigmoid()


def rgb_to_decorrelated(image: torch.Tensor, decorrelate: bool = True) -> torch.Tensor:
    """The inverse of :func:`decorrelated_to_rgb` (pixels clamped into the open interval first)."""
    values = torch.logit(image.clamp(1e-3, 1 - 1e-3))
    if decorrelate:
        values = torch.einsum("ij,njhw->nihw", torch.linalg.inv(COLOUR).to(values), values)
    return values


def frequency_scale(height: int, width: int, decay: float = 1.0) -> torch.Tensor:
    """1 / max(f, 1/max(H, W))^decay per rfft2 bin, times sqrt(H W): every frequency band gets the same energy."""
    fy = torch.fft.fftfreq(height)[:, None]
    fx = torch.fft.rfftfreq(width)[None, :]
    freqs = (fx.pow(2) + fy.pow(2)).sqrt()
    return (1.0 / freqs.clamp_min(1.0 / max(height, width)).pow(decay)) * (height * width) ** 0.5


def fourier(
    size: tuple[int, int],
    facets: int = 1,
    sd: float = 0.01,
    decorrelate: bool = True,
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
    init: torch.Tensor | None = None,
    decay: float = 1.0,
) -> ImageParam:
    """A 1/f^``decay``-scaled Fourier parameterisation of ``facets`` images; ``init`` (1, 3, H, W) starts from a picture."""
    height, width = size
    scale = frequency_scale(height, width, decay).to(device)
    if init is None:
        spectrum = torch.randn(facets, 3, height, width // 2 + 1, 2, generator=generator).to(device) * sd
    else:
        bins = torch.fft.rfft2(rgb_to_decorrelated(init.to(device), decorrelate) * 4.0) / scale
        spectrum = torch.view_as_real(bins).expand(facets, -1, -1, -1, -1).clone()
    spectrum.requires_grad_(True)

    def image() -> torch.Tensor:
        values = torch.fft.irfft2(torch.view_as_complex(spectrum) * scale, s=(height, width)) / 4.0
        return decorrelated_to_rgb(values, decorrelate)

    return ImageParam([spectrum], image)


def _photos() -> list[np.ndarray]:
    from skimage import data
    from sklearn.datasets import load_sample_images

    return [data.chelsea(), data.coffee(), data.astronaut(), data.rocket(), *load_sample_images().images]


@lru_cache(maxsize=8)
def natural_magnitude(height: int, width: int, decorrelate: bool = True) -> torch.Tensor:
    """Mean rfft2 amplitude (3, H, W//2+1) of the sample photos, each resized to H x W and
    standardised in the decorrelated colour space."""
    from PIL import Image

    total = torch.zeros(3, height, width // 2 + 1, dtype=torch.float64)
    photos = _photos()
    for photo in photos:
        resized = np.asarray(Image.fromarray(photo).convert("RGB").resize((width, height), Image.BICUBIC), np.float32) / 255
        values = rgb_to_decorrelated(torch.from_numpy(resized).permute(2, 0, 1)[None], decorrelate)[0]
        values = (values - values.mean((1, 2), keepdim=True)) / values.std().clamp_min(1e-6)
        total += torch.fft.rfft2(values.double()).abs()
    return (total / len(photos)).float()


def maco(
    size: tuple[int, int],
    facets: int = 1,
    decorrelate: bool = True,
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
    contrast: float = 1.0,
) -> ImageParam:
    """Phase-only Fourier parameterisation with the natural-photo amplitude spectrum (MACO)."""
    height, width = size
    magnitude = natural_magnitude(height, width, decorrelate).to(device)
    phase = (torch.rand(facets, 3, height, width // 2 + 1, generator=generator) * 2 - 1).mul(torch.pi).to(device)
    phase.requires_grad_(True)

    def image() -> torch.Tensor:
        values = torch.fft.irfft2(torch.polar(magnitude.expand_as(phase), phase), s=(height, width))
        values = (values - values.mean((-2, -1), keepdim=True)) / values.std((1, 2, 3), keepdim=True).clamp_min(1e-6)
        return decorrelated_to_rgb(contrast * values, decorrelate)

    return ImageParam([phase], image)
