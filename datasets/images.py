"""Image decoding, resizing, lens undistortion and a memory-bounded cache.

Images are decoded lazily and kept as uint8 (RGB or RGBA) in an LRU cache bounded in bytes. Only the
first frame of a multi-frame file (animated PNG, GIF, TIFF) is read, and its declared size is checked
before any pixel is decoded: a few kilobytes of animated PNG can otherwise expand to hundreds of
megabytes of frames.
Distorted cameras (COLMAP / nerfstudio SIMPLE_RADIAL, RADIAL, OPENCV, OPENCV_FISHEYE) are resampled
to the pinhole camera with the same K: each output pixel looks up where the lens model sends it in
the source image (forward model, no iterative inversion); pixels whose source falls outside the
image are marked invalid in the returned mask, so losses ignore them.
"""

from __future__ import annotations

import collections
import threading
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from splat.camera import Camera

from .base import DatasetError
from .checks import check_image_size


def read_image(path: Path) -> np.ndarray:
    """Decode to uint8 (H, W, 3 or 4): the first frame, after checking its declared size.
    DatasetError naming the file when missing, corrupt or too large."""
    import imageio.v3 as iio

    width, height = image_size(path)
    check_image_size(width, height, str(path))
    try:
        img = _decode_cmyk(path)
        if img is None:
            img = np.asarray(iio.imread(path, index=0))  # the first frame only
    except Exception as e:  # noqa: BLE001 - decoders raise many exception types
        raise DatasetError(f"{path}: cannot decode image ({e.__class__.__name__}: {e})") from None
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=-1)
    if img.ndim != 3 or img.shape[-1] not in (1, 2, 3, 4) or img.shape[0] == 0 or img.shape[1] == 0:
        raise DatasetError(f"{path}: unsupported image layout {img.shape}")
    if img.shape[-1] == 1:
        img = np.repeat(img, 3, axis=-1)
    elif img.shape[-1] == 2:  # grey + alpha
        img = np.concatenate([np.repeat(img[..., :1], 3, axis=-1), img[..., 1:]], axis=-1)
    if img.dtype == np.uint16:
        img = (img.astype(np.float32) / 257.0 + 0.5).astype(np.uint8)
    elif img.dtype != np.uint8:
        img = (np.clip(img.astype(np.float32), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    return np.ascontiguousarray(img)


def _decode_cmyk(path: Path) -> np.ndarray | None:
    """CMYK images (print JPEGs) converted to RGB; None for every other kind. Decoded as they are,
    their four channels would pass for RGBA, the K (black) channel taken as alpha."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            if im.mode != "CMYK":
                return None
            return np.asarray(im.convert("RGB"))
    except UnidentifiedImageError:
        return None  # a format Pillow does not know: imageio's other plugins may


def image_size(path: Path) -> tuple[int, int]:
    """(width, height) of the first frame from the file header, without decoding pixels where the
    format allows it (nor counting the frames of an animation, which can mean decoding them)."""
    import imageio.v3 as iio

    if not path.is_file():
        raise DatasetError(f"{path}: image file is missing")
    try:
        shape = iio.improps(path, index=0).shape
    except Exception as e:  # noqa: BLE001
        raise DatasetError(f"{path}: cannot read image header ({e.__class__.__name__}: {e})") from None
    if len(shape) not in (2, 3):
        raise DatasetError(f"{path}: unsupported image layout {tuple(shape)}")
    return int(shape[1]), int(shape[0])


def resize(img: torch.Tensor, width: int, height: int) -> torch.Tensor:
    """(H, W, C) float -> (height, width, C): area averaging for integer shrink factors."""
    H, W = img.shape[:2]
    if (W, H) == (width, height):
        return img
    x = img.permute(2, 0, 1)[None]
    if W % width == 0 and H % height == 0 and W // width == H // height:
        x = F.avg_pool2d(x, W // width)
    else:
        x = F.interpolate(x, size=(height, width), mode="bilinear", antialias=True, align_corners=False)
    return x[0].permute(1, 2, 0).contiguous()


def distort(x: torch.Tensor, y: torch.Tensor, model: str, k: tuple[float, ...]):
    """Lens model applied to normalised pinhole coordinates (COLMAP / OpenCV conventions)."""
    r2 = x * x + y * y
    if model == "SIMPLE_RADIAL":
        f = 1 + k[0] * r2
        return x * f, y * f
    if model == "RADIAL":
        f = 1 + k[0] * r2 + k[1] * r2 * r2
        return x * f, y * f
    if model == "OPENCV":
        k1, k2, p1, p2, k3 = k
        f = 1 + k1 * r2 + k2 * r2 * r2 + k3 * r2 * r2 * r2
        return x * f + 2 * p1 * x * y + p2 * (r2 + 2 * x * x), y * f + p1 * (r2 + 2 * y * y) + 2 * p2 * x * y
    if model == "OPENCV_FISHEYE":
        r = torch.sqrt(r2)
        theta = torch.atan(r)
        t2 = theta * theta
        theta_d = theta * (1 + k[0] * t2 + k[1] * t2**2 + k[2] * t2**3 + k[3] * t2**4)
        scale = torch.where(r > 1e-12, theta_d / r.clamp(min=1e-12), torch.ones_like(r))
        return x * scale, y * scale
    raise DatasetError(f"lens model {model} is not supported")


def undistortion_grid(camera: Camera) -> tuple[torch.Tensor, torch.Tensor]:
    """grid_sample grid (1, H, W, 2) mapping the pinhole image onto the distorted one, and the
    validity mask (H, W) of output pixels whose source lies inside the distorted image."""
    W, H = camera.width, camera.height
    K = torch.as_tensor(camera.K, dtype=torch.float64)
    v, u = torch.meshgrid(
        torch.arange(H, dtype=torch.float64) + 0.5, torch.arange(W, dtype=torch.float64) + 0.5, indexing="ij"
    )
    x = (u - K[0, 2]) / K[0, 0]
    y = (v - K[1, 2]) / K[1, 1]
    xd, yd = distort(x, y, camera.lens, camera.distortion)
    us = xd * K[0, 0] + K[0, 2]
    vs = yd * K[1, 1] + K[1, 2]
    valid = (us >= 0) & (us <= W) & (vs >= 0) & (vs <= H)
    grid = torch.stack([2 * us / W - 1, 2 * vs / H - 1], dim=-1)[None].float()
    return grid, valid


def undistort(img: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    x = img.permute(2, 0, 1)[None]
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    return out[0].permute(1, 2, 0).contiguous()


class ImageCache:
    """LRU cache of decoded images (uint8 tensors), bounded by total bytes."""

    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes
        self.bytes = 0
        self.entries: collections.OrderedDict = collections.OrderedDict()
        self.lock = threading.Lock()

    def get(self, key, load):
        with self.lock:
            if key in self.entries:
                self.entries.move_to_end(key)
                return self.entries[key]
        value = load()
        size = sum(t.numel() * t.element_size() for t in value if t is not None)
        with self.lock:
            if key not in self.entries and size <= self.max_bytes:
                self.entries[key] = value
                self.bytes += size
                while self.bytes > self.max_bytes:
                    _, old = self.entries.popitem(last=False)
                    self.bytes -= sum(t.numel() * t.element_size() for t in old if t is not None)
        return value
