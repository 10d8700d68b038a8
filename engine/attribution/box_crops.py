"""Every window's crop of a batch as one gather, and every window's paste as one ``where``.

Incremental occlusion (:mod:`engine.attribution.incremental`) reads and writes a
box per window at a different place in each picture. A slice copy per window
is one kernel launch per window per layer on a GPU: a batch of 32 windows
through EfficientNet-Lite0 launched about a thousand, more time than its
convolutions on the boxes took. Here the positions are worked out on the host
(numpy) and sent to the device in one non-blocking copy per call
(:func:`engine.devices.on_device`); the values copied are the same.

Tensors are spatial-last: ``(pictures, ..., height, width)``.
"""

import numpy as np
import torch
import torch.nn.functional as F

from engine.devices import on_device

Starts = tuple[np.ndarray, np.ndarray]  # per axis, one position per window


def crops(source: torch.Tensor, first: Starts, size: tuple[int, int], out: torch.Tensor | None = None) -> torch.Tensor:
    """For window i, ``source[i, ..., first[0][i] : first[0][i] + h, first[1][i] : first[1][i] + w]`` (each
    inside ``source``'s map) as one ``(n, ..., h, w)`` tensor, channels last in memory; ``source`` has one
    picture for all windows or one each. One ``index_select`` of whole boxes: a strided view whose first
    axis steps one element through ``source``'s storage, indexed at each box's first element. Written into
    ``out`` (``(n, ..., h, w)``) when given."""
    count, rest = len(first[0]), source.shape[1:-2]
    if not all(0 <= first[a].min() and first[a].max() + size[a] <= source.shape[a - 2] for a in range(2)):
        raise ValueError(f"a {size} crop reaches outside the {tuple(source.shape[-2:])} map")
    pictures = np.arange(count) if source.shape[0] > 1 else np.zeros(count, np.int64)
    strides = source.stride()
    offsets = pictures * strides[0] + first[0].astype(np.int64) * strides[-2] + first[1].astype(np.int64) * strides[-1]
    boxes = source.as_strided((int(offsets.max()) + 1, *size, *rest), (1, *strides[-2:], *strides[1:-2]))
    index = on_device(offsets, source.device)
    if out is None:
        return boxes.index_select(0, index).movedim((1, 2), (-2, -1))
    if (target := out.movedim((-2, -1), (1, 2))).is_contiguous():  # channels last: selected in place
        torch.index_select(boxes, 0, index, out=target)
    else:
        out.copy_(boxes.index_select(0, index).movedim((1, 2), (-2, -1)))
    return out


def within(lo: Starts, hi: Starts, size: tuple[int, int], dim: int, device: torch.device) -> torch.Tensor:
    """Boolean ``(n, 1, ..., h, w)`` (``dim`` axes), true for window i where ``lo[0][i] <= y < hi[0][i]`` and
    ``lo[1][i] <= x < hi[1][i]``."""
    inside = [(lo[a][:, None] <= np.arange(size[a])) & (np.arange(size[a]) < hi[a][:, None]) for a in range(2)]
    rows, cols = on_device(np.concatenate(inside, 1), device, torch.bool).split(list(size), 1)
    mask = rows[:, :, None] & cols[:, None, :]
    return mask.view(len(mask), *([1] * (dim - 3)), *size)


def pasted(target: torch.Tensor, patch: torch.Tensor, offset: Starts) -> None:
    """Write each window's ``patch[i]`` into ``target[i]`` with its [0, 0] at ``offset[.][i]``, dropping what
    falls outside ``target``; only the band of rows and columns some patch reaches is read and written."""
    size, extent = patch.shape[-2:], target.shape[-2:]
    lo = [np.maximum(offset[a], 0) for a in range(2)]
    hi = [np.minimum(offset[a] + size[a], extent[a]) for a in range(2)]
    start, stop = [int(lo[a].min()) for a in range(2)], [int(hi[a].max()) for a in range(2)]
    if any(stop[a] <= start[a] for a in range(2)):
        return
    band = target[..., start[0] : stop[0], start[1] : stop[1]]
    shape = tuple(stop[a] - start[a] for a in range(2))
    first = [start[a] - offset[a] for a in range(2)]  # each patch's box over the band, in patch coordinates
    before = [max(0, int(-first[a].min())) for a in range(2)]
    after = [max(0, int((first[a] + shape[a]).max()) - size[a]) for a in range(2)]
    if any(before + after):  # what the band reads beyond a patch is masked out: padding keeps the reads inside
        patch = F.pad(patch, (before[1], after[1], before[0], after[0]))
    moved = crops(patch, tuple(first[a] + before[a] for a in range(2)), shape)
    mask = within(tuple(lo[a] - start[a] for a in range(2)), tuple(hi[a] - start[a] for a in range(2)), shape, band.dim(), band.device)
    torch.where(mask, moved, band, out=band)
