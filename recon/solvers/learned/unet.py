"""A small 2D U-Net and its complex-image wrapper (the refinement network of VarNet and MoDL's denoiser).

* :class:`UNet`: real ``(N, in_chans, H, W) -> (N, out_chans, H, W)``; H and W must be multiples of
  ``2 ** num_pools`` (the wrapper pads).
* :class:`ComplexUNet`: complex images ``(N, H, W)`` -> complex ``(N, H, W)``. The real and imaginary parts are
  the two channels; each image is normalised by its own mean and standard deviation (per channel) before the
  U-Net and the result un-normalised after, and any matrix size is zero-padded to a multiple of
  ``2 ** num_pools`` and cropped back, so the network sees inputs of the same statistics whatever the
  data's scale and size.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class ConvBlock(nn.Module):
    """Two (3x3 conv -> instance norm -> leaky ReLU) layers: ``(N, cin, H, W) -> (N, cout, H, W)``."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.layers = nn.Sequential(
            nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.InstanceNorm2d(cout), nn.LeakyReLU(0.2, True),
            nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.InstanceNorm2d(cout), nn.LeakyReLU(0.2, True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class UNet(nn.Module):
    """U-Net (Ronneberger et al. 2015) with average-pool down-sampling and transposed-conv up-sampling.

    Parameters
    ----------
    in_chans, out_chans: input and output channels.
    chans: channels of the first level (doubled at each pool).
    num_pools: down-sampling steps; inputs need H, W divisible by ``2 ** num_pools``.
    """

    def __init__(self, in_chans: int = 2, out_chans: int = 2, chans: int = 8, num_pools: int = 3):
        super().__init__()
        self.num_pools = int(num_pools)
        self.down = nn.ModuleList([ConvBlock(in_chans, chans)])
        ch = chans
        for _ in range(self.num_pools - 1):
            self.down.append(ConvBlock(ch, ch * 2))
            ch *= 2
        self.bottom = ConvBlock(ch, ch * 2)
        self.up_conv = nn.ModuleList()
        self.up_block = nn.ModuleList()
        for _ in range(self.num_pools):
            self.up_conv.append(nn.ConvTranspose2d(ch * 2, ch, 2, stride=2, bias=False))
            self.up_block.append(ConvBlock(ch * 2, ch))
            ch //= 2
        self.out = nn.Conv2d(chans, out_chans, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for block in self.down:
            x = block(x)
            skips.append(x)
            x = F.avg_pool2d(x, 2)
        x = self.bottom(x)
        for conv, block in zip(self.up_conv, self.up_block):
            x = F.leaky_relu(conv(x), 0.2)
            x = block(torch.cat([x, skips.pop()], dim=1))
        return self.out(x)


def pad_to_multiple(x: torch.Tensor, multiple: int) -> tuple[torch.Tensor, tuple[int, int, int, int]]:
    """Zero-pad the last two axes symmetrically up to multiples of ``multiple``; returns the padding used
    as ``(left, right, top, bottom)`` for :func:`unpad`."""
    h, w = x.shape[-2:]
    ph = (-h) % multiple
    pw = (-w) % multiple
    pad = (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2)
    return (F.pad(x, pad) if ph or pw else x), pad


def unpad(x: torch.Tensor, pad: tuple[int, int, int, int]) -> torch.Tensor:
    """Undo :func:`pad_to_multiple`."""
    left, right, top, bottom = pad
    h, w = x.shape[-2:]
    return x[..., top:h - bottom, left:w - right]


class ComplexUNet(nn.Module):
    """U-Net on complex images, any size: ``(N, H, W)`` complex -> ``(N, H, W)`` complex.

    The input is split into 2 real channels, normalised per image and channel (mean / std), padded to a
    multiple of ``2 ** num_pools``, passed through :class:`UNet`, cropped and un-normalised.

    ``correction=True``: the network outputs a correction term on the input's scale (``unet(...) * std``, no
    mean added back) and its last layer starts at zero, so an untrained network returns exactly 0 and the
    model it sits in starts from its classical limit (data consistency only, classical ACS maps); training
    then only has to learn improvements, which converges far faster on a CPU budget.
    """

    def __init__(self, chans: int = 8, num_pools: int = 3, correction: bool = False):
        super().__init__()
        self.unet = UNet(2, 2, chans, num_pools)
        self.multiple = 2 ** int(num_pools)
        self.correction = bool(correction)
        if self.correction:
            nn.init.zeros_(self.unet.out.weight)
            nn.init.zeros_(self.unet.out.bias)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        x = torch.stack([image.real, image.imag], dim=1)  # (N, 2, H, W)
        mean = x.mean(dim=(-2, -1), keepdim=True)
        std = x.std(dim=(-2, -1), keepdim=True) + 1e-8
        x, pad = pad_to_multiple((x - mean) / std, self.multiple)
        x = unpad(self.unet(x), pad) * std
        if not self.correction:
            x = x + mean
        return torch.complex(x[:, 0].contiguous(), x[:, 1].contiguous())
