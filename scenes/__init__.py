"""Procedural scenes built in code (no downloaded assets), for the demo, tests and benchmarks."""

from .cameras import intrinsics, look_at, orbit
from .dataset import dome_cameras, forward_facing_cameras, write_blender_dataset, write_llff_dataset
from .dynamic import (
    dynamic_scene_at,
    dynamic_scene_objects,
    film_dynamic_video,
    walk_views,
    write_dnerf_dataset,
    write_multiview_video_dataset,
)
from .still_life import still_life, still_life_cameras, still_life_orbit

__all__ = [
    "dome_cameras",
    "dynamic_scene_at",
    "dynamic_scene_objects",
    "film_dynamic_video",
    "forward_facing_cameras",
    "intrinsics",
    "look_at",
    "orbit",
    "still_life",
    "still_life_cameras",
    "still_life_orbit",
    "walk_views",
    "write_blender_dataset",
    "write_dnerf_dataset",
    "write_llff_dataset",
    "write_multiview_video_dataset",
]
