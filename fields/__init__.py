"""Hash-grid neural fields (Instant-NGP style) in Warp: the multiresolution hash encoding with
tiny-cuda-nn semantics and a fused encoding + MLP network, each with hand-written backward passes."""

from .fused import HashGridMLP
from .hash_grid import HashGridEncoding

__all__ = ["HashGridEncoding", "HashGridMLP"]
