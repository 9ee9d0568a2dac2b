"""The tile-based differentiable Gaussian rasterizer, in NVIDIA Warp (CPU and CUDA from one source).

Public entry: `rasterize` (also `splat.rasterize`). The stages are importable on their own, as in
gsplat: `fully_fused_projection`, `sh_colors`, `isect_tiles`, `isect_offset_encode`,
`rasterize_to_pixels`; `torch_impl` holds their pure-torch twins.
"""

from .binning import isect_offset_encode, isect_tiles
from .compositing import rasterize_to_pixels
from .projection import fully_fused_projection
from .rasterization import camera_centers, rasterize
from .rasterization_4d import rasterize_4d
from .slicing import covariance_4d, slice_at_times
from .spherical_harmonics import sh_colors

__all__ = [
    "camera_centers",
    "covariance_4d",
    "fully_fused_projection",
    "isect_offset_encode",
    "isect_tiles",
    "rasterize",
    "rasterize_4d",
    "rasterize_to_pixels",
    "sh_colors",
    "slice_at_times",
]
