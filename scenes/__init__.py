"""Procedural scenes built in code (no downloaded assets), for the demo, tests and benchmarks."""

from .cameras import intrinsics, look_at, orbit
from .dataset import dome_cameras, write_blender_dataset
from .still_life import still_life, still_life_cameras

__all__ = ["dome_cameras", "intrinsics", "look_at", "orbit", "still_life", "still_life_cameras", "write_blender_dataset"]
