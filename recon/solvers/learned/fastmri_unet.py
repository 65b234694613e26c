"""The fastMRI U-Net (``fastmri.models.Unet``, fastmri 0.3.0): same module tree, parameter names and shapes,
and forward pass, so that a fastMRI state dict loads with ``load_state_dict(strict=True)`` and gives fastMRI's
numbers.

Architecture (Ronneberger et al. 2015 as fastMRI builds it): ``num_pool_layers`` encoder blocks
(two 3x3 conv -> instance norm -> LeakyReLU(0.2) -> dropout, channels ``chans * 2**i``) with 2x2 average
pooling, a bottleneck block, and as many decoder stages (2x2 transposed conv -> instance norm -> LeakyReLU,
skip concatenation, a conv block), then a 1x1 conv. When a pooled size was odd the upsampled map is one
pixel short; it is reflect-padded on the right/bottom, as fastMRI does.

Also :class:`NormUnet` (fastMRI's ``NormUnet``): a U-Net on complex images with per-(real, imaginary) group
mean/std normalisation and zero padding to a multiple of 16 (split floor/ceil) around it.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def _conv_block(in_chans: int, out_chans: int, drop_prob: float) -> nn.Sequential:
    layers = []
    for c_in in (in_chans, out_chans):
        layers += [nn.Conv2d(c_in, out_chans, kernel_size=3, padding=1, bias=False), nn.InstanceNorm2d(out_chans),
                   nn.LeakyReLU(negative_slope=0.2, inplace=True), nn.Dropout2d(drop_prob)]
    return nn.Sequential(*layers)


class ConvBlock(nn.Module):
    """Two (3x3 conv, instance norm, LeakyReLU 0.2, dropout): ``(N, in_chans, H, W) -> (N, out_chans, H, W)``."""

    def __init__(self, in_chans: int, out_chans: int, drop_prob: float = 0.0):
        super().__init__()
        self.in_chans, self.out_chans, self.drop_prob = in_chans, out_chans, drop_prob
        self.layers = _conv_block(in_chans, out_chans, drop_prob)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.layers(image)


class TransposeConvBlock(nn.Module):
    """2x2 stride-2 transposed conv, instance norm, LeakyReLU 0.2: ``(N, in, H, W) -> (N, out, 2H, 2W)``."""

    def __init__(self, in_chans: int, out_chans: int):
        super().__init__()
        self.in_chans, self.out_chans = in_chans, out_chans
        self.layers = nn.Sequential(
            nn.ConvTranspose2d(in_chans, out_chans, kernel_size=2, stride=2, bias=False),
            nn.InstanceNorm2d(out_chans), nn.LeakyReLU(negative_slope=0.2, inplace=True))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.layers(image)


class Unet(nn.Module):
    """fastMRI's U-Net: ``(N, in_chans, H, W) -> (N, out_chans, H, W)`` real images, any H, W.

    State dict keys: ``down_sample_layers.{i}.layers.{0,1,4,5}.*``, ``conv.layers.*``,
    ``up_transpose_conv.{i}.layers.{0,1}.*``, ``up_conv.{i}.layers.*`` and ``up_conv.{last}.{0.layers, 1}.*``.
    """

    def __init__(self, in_chans: int, out_chans: int, chans: int = 32, num_pool_layers: int = 4,
                 drop_prob: float = 0.0):
        super().__init__()
        self.in_chans, self.out_chans, self.chans = in_chans, out_chans, chans
        self.num_pool_layers, self.drop_prob = num_pool_layers, drop_prob
        widths = [chans * 2 ** i for i in range(num_pool_layers)]  # encoder output channels
        self.down_sample_layers = nn.ModuleList(
            [ConvBlock(c_in, c_out, drop_prob) for c_in, c_out in zip([in_chans] + widths[:-1], widths)])
        self.conv = ConvBlock(widths[-1], widths[-1] * 2, drop_prob)
        ups: list[nn.Module] = [ConvBlock(c * 2, c, drop_prob) for c in reversed(widths[1:])]
        ups.append(nn.Sequential(ConvBlock(widths[0] * 2, widths[0], drop_prob),
                                 nn.Conv2d(widths[0], out_chans, kernel_size=1, stride=1)))
        self.up_conv = nn.ModuleList(ups)  # registered before up_transpose_conv: fastMRI's state-dict key order
        self.up_transpose_conv = nn.ModuleList([TransposeConvBlock(c * 2, c) for c in reversed(widths)])

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        skips = []
        x = image
        for block in self.down_sample_layers:
            x = block(x)
            skips.append(x)
            x = F.avg_pool2d(x, kernel_size=2, stride=2)
        x = self.conv(x)
        for up, block in zip(self.up_transpose_conv, self.up_conv):
            skip = skips.pop()
            x = up(x)
            pad_w = int(x.shape[-1] != skip.shape[-1])
            pad_h = int(x.shape[-2] != skip.shape[-2])
            if pad_w or pad_h:
                x = F.pad(x, [0, pad_w, 0, pad_h], mode="reflect")
            x = block(torch.cat([x, skip], dim=1))
        return x

    @property
    def config(self) -> dict:
        """The constructor arguments (a recon weights file's ``config``, with ``model="fastmri-unet"``)."""
        return {"model": "fastmri-unet", "in_chans": self.in_chans, "out_chans": self.out_chans,
                "chans": self.chans, "num_pool_layers": self.num_pool_layers}


def _pad16(n: int) -> tuple[int, int, int]:
    """(before, after, padded size) to the next multiple of 16, split floor/ceil as fastMRI's NormUnet."""
    m = ((n - 1) | 15) + 1
    return math.floor((m - n) / 2), math.ceil((m - n) / 2), m


class NormUnet(nn.Module):
    """fastMRI's NormUnet on complex images ``(B, C, H, W)`` complex64 -> same shape.

    Channels go to the U-Net as ``[Re c_0..c_{C-1}, Im c_0..c_{C-1}]``; each of the two groups (real, imaginary)
    is normalised by its own mean and unbiased std over (coils, H, W), then padded to multiples of 16.
    """

    def __init__(self, chans: int, num_pools: int, in_chans: int = 2, out_chans: int = 2, drop_prob: float = 0.0):
        super().__init__()
        self.unet = Unet(in_chans=in_chans, out_chans=out_chans, chans=chans, num_pool_layers=num_pools,
                         drop_prob=drop_prob)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        parts = torch.stack([x.real, x.imag], dim=1)  # (B, 2, C, H, W)
        flat = parts.reshape(b, 2, c * h * w)
        mean = flat.mean(dim=2).view(b, 2, 1, 1, 1)
        std = flat.std(dim=2).view(b, 2, 1, 1, 1)
        y = ((parts - mean) / std).reshape(b, 2 * c, h, w)
        top, bottom, hm = _pad16(h)
        left, right, wm = _pad16(w)
        y = F.pad(y, [left, right, top, bottom])
        y = self.unet(y)[..., top:hm - bottom, left:wm - right]
        y = y.reshape(b, 2, c, h, w) * std + mean
        return torch.complex(y[:, 0].contiguous(), y[:, 1].contiguous())


def unet_input(image: torch.Tensor, eps: float = 1e-11) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """fastMRI's ``UnetDataTransform`` normalisation: ``(image - mean) / (std + eps)`` clamped to [-6, 6].

    ``image``: real ``(..., H, W)`` (the cropped zero-filled RSS or single-coil magnitude). Returns
    ``(normalised image, mean, std)`` with mean/std 0-dim tensors (std unbiased, as ``torch.std``).
    """
    mean = image.mean()
    std = image.std()
    return ((image - mean) / (std + eps)).clamp(-6, 6), mean, std
