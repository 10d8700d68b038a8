"""Colour preservation for style transfer (Gatys, Bethge, Hertzmann & Shechtman
2016, "Preserving color in neural artistic style transfer", arXiv:1606.05897).

- Luminance-only transfer: style and content become grey luminance pictures
  (the style's luminance mean/std matched to the content's), the transfer runs
  on them, and the result's luminance Y is combined with the photo's I and Q
  (YIQ colour space).
- Colour matching: each style image's pixels go through the affine map that
  gives them the photo's colour mean and covariance, x' = A (x - mu_s) + mu_c
  with A = Sigma_c^(1/2) Sigma_s^(-1/2) (symmetric square roots), before the transfer.
"""

import numpy as np
import torch
from PIL import Image

# NTSC RGB -> YIQ
_YIQ = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])


def _pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB"), dtype=np.float64).reshape(-1, 3) / 255.0


def _picture(pixels: np.ndarray, size: tuple[int, int]) -> Image.Image:
    w, h = size
    array = (np.clip(pixels, 0, 1) * 255.0).round().astype(np.uint8).reshape(h, w, 3)
    return Image.fromarray(array, "RGB")


def luminance(pixels: np.ndarray) -> np.ndarray:
    return pixels @ _YIQ[0].double().numpy()


def luminance_image(image: Image.Image, like: Image.Image | None = None) -> Image.Image:
    """A grey picture of ``image``'s luminance; with ``like``, its mean/std matched to ``like``'s."""
    y = luminance(_pixels(image))
    if like is not None:
        ref = luminance(_pixels(like))
        y = (y - y.mean()) / max(y.std(), 1e-6) * ref.std() + ref.mean()
    return _picture(np.repeat(y[:, None], 3, axis=1), image.size)


def _sqrt_psd(matrix: np.ndarray, inverse: bool = False) -> np.ndarray:
    values, vectors = np.linalg.eigh(matrix)
    values = np.clip(values, 1e-8, None)
    power = -0.5 if inverse else 0.5
    return (vectors * values**power) @ vectors.T


def match_colors(style: Image.Image, content: Image.Image) -> Image.Image:
    """``style`` with its colour mean and covariance mapped onto ``content``'s."""
    s, c = _pixels(style), _pixels(content)
    mu_s, mu_c = s.mean(0), c.mean(0)
    a = _sqrt_psd(np.cov(c, rowvar=False)) @ _sqrt_psd(np.cov(s, rowvar=False), inverse=True)
    return _picture((s - mu_s) @ a.T + mu_c, style.size)


def with_luminance(colour_source: torch.Tensor, luminance_source: torch.Tensor) -> torch.Tensor:
    """Y from ``luminance_source`` with I, Q from ``colour_source`` (both (1, 3, H, W) RGB)."""
    yiq = _YIQ.to(colour_source)
    ours = torch.einsum("ij,njhw->nihw", yiq, luminance_source)
    theirs = torch.einsum("ij,njhw->nihw", yiq, colour_source)
    combined = torch.cat([ours[:, :1], theirs[:, 1:]], dim=1)
    return torch.einsum("ij,njhw->nihw", torch.linalg.inv(yiq), combined).clamp(0, 1)
