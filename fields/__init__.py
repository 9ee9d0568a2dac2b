"""Hash-grid neural fields (Instant-NGP style) in Warp: the multiresolution hash encoding with
tiny-cuda-nn semantics, a fused encoding + MLP network and volume rendering of packed ray samples,
each with hand-written backward passes."""

from .fused import HashGridMLP
from .hash_grid import HashGridEncoding
from .volume_rendering import composite_rays

__all__ = ["HashGridEncoding", "HashGridMLP", "composite_rays"]
