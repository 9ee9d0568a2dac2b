"""Posed-image datasets: format detection, loading, normalisation and lazily cached images.

    from splat.datasets import load_dataset
    data = load_dataset("path/to/scene")           # blender, nerfstudio, multiview, colmap or llff
    rgb, mask = data.image(data.train_indices[0])   # float (H, W, 3) in [0, 1], bool (H, W) or None

Formats (auto-detected; `format=` overrides): Blender / NeRF-synthetic (and D-NeRF),
nerfstudio `transforms.json`, multi-view video folders (`transforms.json` with a "cameras" list and
one frame folder per camera, see `multiview.py`), COLMAP `sparse/0`, LLFF `poses_bounds.npy`.
Dynamic scenes give every camera a `time` in [0, 1] (`is_dynamic`). Every problem with the
files raises `DatasetError` (a ValueError) whose one-line message names the file.
"""

from __future__ import annotations

from .base import DatasetError, Frame
from .loading import FORMATS, auto_downscale, detect_format, load_dataset
from .normalization import Normalization, focus_point
from .scene_bounds import SceneBounds
from .scene_dataset import SceneDataset

__all__ = [
    "FORMATS",
    "DatasetError",
    "Frame",
    "Normalization",
    "SceneBounds",
    "SceneDataset",
    "auto_downscale",
    "detect_format",
    "focus_point",
    "load_dataset",
]
