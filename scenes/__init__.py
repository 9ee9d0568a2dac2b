"""Procedural scenes built in code (no downloaded assets), for the demo, tests and benchmarks."""

from .cameras import intrinsics, look_at, orbit
from .still_life import still_life, still_life_cameras

__all__ = ["intrinsics", "look_at", "orbit", "still_life", "still_life_cameras"]
