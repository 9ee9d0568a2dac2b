"""`splat fit-image`: fit a 2D hash grid + MLP to one image (the standard hash-encoding demo).

Each step samples a batch of pixels, evaluates the fused network at their centres (x + 0.5) / W,
(y + 0.5) / H and takes an Adam step (lr 1e-2, betas 0.9/0.99, eps 1e-15, tiny-cuda-nn's
settings) on the mean squared error of sigmoid(output) against the pixel colours.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import torch

from splat.train.losses import psnr

from .fused import HashGridMLP


def image_network(
    width: int, height: int, n_levels: int = 16, log2_hashmap_size: int = 19, generator: torch.Generator | None = None
) -> HashGridMLP:
    """Levels from resolution 16 up to the image's size (per_level_scale set accordingly)."""
    base = 16
    finest = max(width, height, base + 1)
    per_level = math.exp(math.log(finest / base) / max(n_levels - 1, 1))
    return HashGridMLP(
        3,
        n_hidden_layers=2,
        n_input_dims=2,
        n_levels=n_levels,
        n_features_per_level=2,
        log2_hashmap_size=log2_hashmap_size,
        base_resolution=base,
        per_level_scale=per_level,
        generator=generator,
    )


def pixel_centres(width: int, height: int, device) -> torch.Tensor:
    ys, xs = torch.meshgrid(torch.arange(height, device=device), torch.arange(width, device=device), indexing="ij")
    return torch.stack([(xs.reshape(-1) + 0.5) / width, (ys.reshape(-1) + 0.5) / height], dim=1).float()


@torch.no_grad()
def reconstruct(net: HashGridMLP, width: int, height: int, chunk: int = 1 << 18) -> torch.Tensor:
    dev = net.w_in.device
    coords = pixel_centres(width, height, dev)
    out = torch.cat([torch.sigmoid(net(coords[i : i + chunk])) for i in range(0, coords.shape[0], chunk)])
    return out.reshape(height, width, 3)


def fit_image(
    image: torch.Tensor,
    steps: int = 2000,
    batch: int = 1 << 16,
    seed: int = 0,
    log2_hashmap_size: int = 19,
    progress=None,
    device: str = "cpu",
) -> tuple[HashGridMLP, list[dict]]:
    """Fit `image` (H, W, 3) in [0, 1]; returns the network and [{step, seconds, psnr}] (PSNR of
    the full reconstruction, measured every steps // 10 steps and at the end)."""
    H, W = image.shape[:2]
    gen = torch.Generator().manual_seed(seed)
    net = image_network(W, H, log2_hashmap_size=log2_hashmap_size, generator=gen).to(device)
    target = image.reshape(-1, 3).to(device)
    coords = pixel_centres(W, H, device)
    opt = torch.optim.Adam(net.parameters(), lr=1e-2, betas=(0.9, 0.99), eps=1e-15)
    history, seconds = [], 0.0
    every = max(1, steps // 10)
    for step in range(1, steps + 1):
        t0 = time.perf_counter()
        idx = torch.randint(0, H * W, (min(batch, H * W),), generator=gen).to(device)
        loss = ((torch.sigmoid(net(coords[idx])) - target[idx]) ** 2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        seconds += time.perf_counter() - t0
        if step % every == 0 or step == steps:
            history.append(
                {
                    "step": step,
                    "seconds": round(seconds, 3),
                    "psnr": psnr(reconstruct(net, W, H), image.to(device), min_mse=1e-12),
                }
            )
            if progress is not None:
                progress(history[-1])
    return net, history


def load_image(path: str | Path) -> torch.Tensor:
    from splat.datasets.images import read_image

    pixels = read_image(Path(path))
    return torch.from_numpy(pixels[..., :3].copy()).float() / 255.0


def save_fit(image: torch.Tensor, history: list[dict], src: str | Path, out: str | Path | None = None) -> Path:
    """Write `fit_image`'s reconstruction of the image at `src` (default: IMAGE_STEM.fit.png beside
    it) and, beside it as .json, the image's size and the PSNR history; returns the image's path."""
    import json

    from splat.io_utils import atomic_path, write_image

    src = Path(src)
    out = Path(out) if out else src.with_name(src.stem + ".fit.png")
    H, W = image.shape[:2]
    write_image(out, image)
    with atomic_path(out.with_suffix(".json")) as tmp:
        tmp.write_text(json.dumps({"image": str(src), "width": W, "height": H, "history": history}, indent=1) + "\n")
    return out
