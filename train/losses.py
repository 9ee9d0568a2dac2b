"""Photometric losses and image metrics: L1, SSIM (separable Gaussian window), PSNR."""

from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F

SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_C1 = 0.01**2
SSIM_C2 = 0.03**2


@functools.cache
def _gaussian_window(size: int, sigma: float) -> torch.Tensor:
    x = torch.arange(size, dtype=torch.float64) - size // 2  # cast to the images' dtype by _blur
    w = torch.exp(-(x**2) / (2 * sigma**2))
    return w / w.sum()


def _blur(x: torch.Tensor) -> torch.Tensor:
    """Separable 11x11 Gaussian blur of (B, C, H, W), zero padding ('same' size, as INRIA 3DGS)."""
    C = x.shape[1]
    w = _gaussian_window(SSIM_WINDOW, SSIM_SIGMA).to(x)
    pad = SSIM_WINDOW // 2
    x = F.conv2d(x, w.view(1, 1, 1, -1).expand(C, 1, 1, -1), padding=(0, pad), groups=C)
    return F.conv2d(x, w.view(1, 1, -1, 1).expand(C, 1, -1, 1), padding=(pad, 0), groups=C)


def ssim_map(img: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """Per-pixel SSIM of (H, W, C) images in [0, 1] (mean over channels): (H, W).

    float32 images against a reference that needs no gradient (training, evaluation) go through
    the Warp kernels of `train/ssim.py`; anything else (float64, gradients for both) through the
    torch code below, which is also what those kernels are tested against."""
    if img.dtype == torch.float32 and ref.dtype == torch.float32 and not ref.requires_grad:
        from .ssim import ssim_map as fused_ssim_map

        return fused_ssim_map(img, ref)
    return ssim_map_torch(img, ref)


def ssim_map_torch(img: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """`ssim_map` in torch operations (any dtype, gradients for both images)."""
    x = img.permute(2, 0, 1)[None]
    y = ref.permute(2, 0, 1)[None]
    # one blur pass over all five statistics' inputs
    stats = _blur(torch.cat([x, y, x * x, y * y, x * y], dim=1))
    mu_x, mu_y, xx, yy, xy = stats.chunk(5, dim=1)
    var_x = xx - mu_x**2
    var_y = yy - mu_y**2
    cov = xy - mu_x * mu_y
    num = (2 * mu_x * mu_y + SSIM_C1) * (2 * cov + SSIM_C2)
    den = (mu_x**2 + mu_y**2 + SSIM_C1) * (var_x + var_y + SSIM_C2)
    return (num / den)[0].mean(dim=0)


def ssim(img: torch.Tensor, ref: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    m = ssim_map(img, ref)
    return m.mean() if mask is None else m[mask].mean()


def l1(img: torch.Tensor, ref: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    d = (img - ref).abs()
    return d.mean() if mask is None else d[mask].mean()


def psnr_from_mse(mse: float, min_mse: float = 0.0) -> float:
    """PSNR in dB of images in [0, 1] with mean squared error `mse`, floored at `min_mse`
    (identical images: inf, or -10 log10(min_mse) with a floor)."""
    mse = max(float(mse), min_mse)
    return float("inf") if mse == 0 else -10.0 * math.log10(mse)


def psnr(img: torch.Tensor, ref: torch.Tensor, mask: torch.Tensor | None = None, min_mse: float = 0.0) -> float:
    """PSNR of `img` (clamped to [0, 1]) against `ref` over the pixels of `mask` (all when None)."""
    d = (img.detach().clamp(0, 1) - ref).pow(2)
    return psnr_from_mse(d.mean() if mask is None else d[mask].mean(), min_mse)


def photometric_loss(img, ref, mask=None, ssim_lambda: float = 0.2) -> torch.Tensor:
    """(1 - lambda) L1 + lambda (1 - SSIM): the 3DGS training loss."""
    return (1 - ssim_lambda) * l1(img, ref, mask) + ssim_lambda * (1 - ssim(img, ref, mask))
