"""Fast style transfer: a feed-forward network trained to paint in one style
(Johnson et al. 2016, https://arxiv.org/abs/1603.08155), with instance
normalisation instead of batch normalisation (Ulyanov et al. 2016,
https://arxiv.org/abs/1607.08022).

The transformer (strided-conv downsampling, residual blocks, nearest-upsample
convs) is trained for ``steps`` Adam steps on square crops of the content
collection against perceptual losses of the loss network (the request's
model, VGG19 by default layers): content at ``content_layer``, style as Gram
matrices at ``style_layers``, plus a little total variation. Both feature
losses are relative (squared error over the target's mean square), so the
weights mean the same for any loss network's feature scale (Caffe VGG19's
0-255 features have Gram entries near 1e6). It is then
applied, in one forward pass each, to every content image at its own size.
"""

import numpy as np
import torch
from PIL import Image
from pydantic import BaseModel, Field
from torch import nn

from engine.hooks import capture, run_until
from engine.imaging import fit_image, to_image, to_tensor
from engine.models import ConvLensModel
from engine.optim.loop import Rendered
from engine.optim.style_losses import gram_matrix, tv_norm
from engine.optim.report import synthesis_result
from engine.registry import InputSlot, method
from engine.result import Result

STYLE_LAYERS = ("block1_relu1", "block2_relu1", "block3_relu1", "block4_relu1", "block5_relu1")


class FastStyleParams(BaseModel):
    steps: int = Field(300, ge=1, le=20000, description="training steps of the transformer network")
    batch_size: int = Field(4, ge=1, le=32, description="content crops per training step")
    size: int = Field(256, ge=32, le=512, description="side of the square training crops (and of the style image)")
    lr: float = Field(1e-3, gt=0, le=1.0, description="Adam learning rate")
    content_weight: float = Field(1.0, ge=0, le=1e6, description="weight of the content (feature) loss")
    style_weight: float = Field(10.0, ge=0, le=1e6, description="weight of the style (Gram) loss")
    tv_weight: float = Field(1.0, ge=0, le=1e6, description="weight of the total-variation smoothness loss")
    content_layer: str = Field("block4_relu2", description="loss-network layer compared for content")
    style_layers: list[str] = Field(list(STYLE_LAYERS), min_length=1, max_length=16, description="loss-network layers whose Gram matrices carry the style")
    width: int = Field(32, ge=4, le=64, description="channels of the transformer's first layer (x2, x4 after each downsampling)")
    residual_blocks: int = Field(5, ge=1, le=10, description="residual blocks in the transformer")
    max_side: int = Field(1024, ge=64, le=4096, description="longer pictures are stylised at this side and resized back to their own size")
    preview_every: int = Field(50, ge=0, le=20000, description="make a preview every k steps (0: never)")
    seed: int = Field(0, ge=0, le=2**31 - 1, description="seeds the network's initial weights and the crop order")


def conv(cin: int, cout: int, kernel: int, stride: int = 1, relu: bool = True) -> nn.Sequential:
    layers = [nn.ReflectionPad2d(kernel // 2), nn.Conv2d(cin, cout, kernel, stride), nn.InstanceNorm2d(cout, affine=True)]
    return nn.Sequential(*layers, nn.ReLU()) if relu else nn.Sequential(*layers)


class Residual(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.body = nn.Sequential(conv(channels, channels, 3), conv(channels, channels, 3, relu=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class Transformer(nn.Module):
    """RGB [0, 1] in, RGB [0, 1] out, same size (inputs are reflect-padded to a multiple of 4)."""

    def __init__(self, width: int, blocks: int):
        super().__init__()
        w = width
        self.net = nn.Sequential(
            conv(3, w, 9), conv(w, 2 * w, 3, 2), conv(2 * w, 4 * w, 3, 2),
            *[Residual(4 * w) for _ in range(blocks)],
            nn.Upsample(scale_factor=2, mode="nearest"), conv(4 * w, 2 * w, 3),
            nn.Upsample(scale_factor=2, mode="nearest"), conv(2 * w, w, 3),
            nn.ReflectionPad2d(4), nn.Conv2d(w, 3, 9),
        )  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[2:]
        x = nn.functional.pad(x, (0, -width % 4, 0, -height % 4), mode="reflect")
        return torch.sigmoid(self.net(x))[:, :, :height, :width]


def stylise(net: Transformer, image: Image.Image, max_side: int, device: torch.device) -> Image.Image:
    """``image`` through the trained network, returned at its own size."""
    scale = min(1.0, max_side / max(image.size))
    work = image if scale == 1.0 else image.resize((max(4, round(image.width * scale)), max(4, round(image.height * scale))), Image.BICUBIC)
    with torch.inference_mode():
        out = to_image(net(to_tensor(work, device)))
    return out if out.size == image.size else out.resize(image.size, Image.BICUBIC)


@method(
    "fast_style_transfer",
    summary="Train a feed-forward style network on a content collection, then stylise each content image",
    category="synthesise",
    params=FastStyleParams,
    inputs=(
        InputSlot("content", "pictures to train on and to stylise", many=True, min_count=1, max_count=64),
        InputSlot("style", "the style picture"),
    ),
    inline=False,
)
def fast_style_transfer(model: ConvLensModel, inputs, params: FastStyleParams, progress) -> Result:
    device, square = model.device, (params.size, params.size)
    layers = dict.fromkeys([params.content_layer, *params.style_layers])
    modules = {name: model.layer(name) for name in layers}
    contents = [image.convert("RGB") for image in inputs["content"]]
    crops = torch.cat([to_tensor(fit_image(image, square, "crop"), device) for image in contents])
    with capture(modules, stop_early=True, detach=True) as found, torch.inference_mode():
        run_until(model, to_tensor(fit_image(inputs["style"], square, "crop"), device))
        style_grams = {name: gram_matrix(found[name]).clone() for name in params.style_layers}
    style_scale = {name: style_grams[name].pow(2).mean().clamp_min(1e-12) for name in params.style_layers}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(params.seed)
        net = Transformer(params.width, params.residual_blocks).to(device)
    optimiser = torch.optim.Adam(net.parameters(), lr=params.lr)
    rng = np.random.default_rng(params.seed)
    losses, parts = [], {"content": [], "style": [], "tv": []}
    with capture(modules, stop_early=True) as found:
        for step in range(1, params.steps + 1):
            batch = crops[torch.from_numpy(rng.integers(0, len(crops), params.batch_size)).to(device)]
            out = net(batch)
            found.clear()
            run_until(model, torch.cat([out, batch]))
            half = len(batch)
            target = found[params.content_layer][half:].detach()
            content = (found[params.content_layer][:half] - target).pow(2).mean() / target.pow(2).mean().clamp_min(1e-12)
            style = sum((gram_matrix(found[name][:half]) - style_grams[name]).pow(2).mean() / style_scale[name] for name in params.style_layers)
            tv = tv_norm(out, beta=1.0)
            loss = params.content_weight * content + params.style_weight * style + params.tv_weight * tv
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            losses.append(float(loss.detach()))
            for name, value in (("content", content), ("style", style), ("tv", tv)):
                parts[name].append(float(value.detach()))
            preview = None
            if params.preview_every and (step % params.preview_every == 0 or step == params.steps):
                with torch.no_grad():
                    preview = to_image(net(crops[:1]))
            progress(step, params.steps, preview, loss=losses[-1])
    outputs = [stylise(net, image, params.max_side, device) for image in contents]
    notes = [f"content {i} stylised at max side {params.max_side} and resized back" for i, img in enumerate(contents) if max(img.size) > params.max_side]
    first = to_tensor(outputs[0])
    result = synthesis_result(Rendered(first, losses, params.steps), {"loss_parts": parts, "notes": notes}, name="stylised_0")
    for index, picture in enumerate(outputs[1:], start=1):
        result.images[f"stylised_{index}"] = picture
    return result
