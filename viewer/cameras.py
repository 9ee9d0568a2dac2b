"""The viewer's camera helpers: where a new browser starts, and the training cameras drawn as
frustums that jump the view to their pose when clicked."""

from __future__ import annotations

import math

import numpy as np

from splat.camera import Camera, rotmat_to_quat


def set_initial_view(server, scene) -> float:
    """Where a new browser starts (and "reset view" returns): the first training camera when
    the scene has them, else a view from the front and above its bounds (z up). Returns the
    initial vertical FOV in degrees."""
    init = server.initial_camera
    cams = scene.cameras
    fov = 50.0
    if cams:
        c2w = cams[0].c2w
        lo, hi = scene.bounds()
        distance = max(float(np.linalg.norm((lo + hi) / 2 - c2w[:3, 3])), 1e-3)
        up = -c2w[:3, 1]  # OpenCV y points down
        position, look_at = c2w[:3, 3], c2w[:3, 3] + distance * c2w[:3, 2]
        fov = float(np.clip(math.degrees(2 * math.atan(0.5 * cams[0].height / cams[0].fy)), 10, 120))
    else:
        lo, hi = scene.bounds()
        look_at = (lo + hi) / 2
        radius = max(float(np.linalg.norm(hi - lo)), 1e-3)
        position = look_at + np.array([0.0, -1.2 * radius, 0.6 * radius])
        up = np.array([0.0, 0.0, 1.0])
    server.scene.set_up_direction(tuple(float(x) for x in up))
    init.position = tuple(float(x) for x in position)
    init.look_at = tuple(float(x) for x in look_at)
    init.up = tuple(float(x) for x in up)
    init.fov = math.radians(fov)
    return fov


def show_frustums(state, cams: list[Camera]) -> None:
    """Draw (or remove, when the GUI switch is off) one browser's training-camera frustums."""
    for f in state.frustums:
        f.remove()
    state.frustums = []
    if not state.gui.show_cameras.value or not cams:
        return
    extent = np.linalg.norm(np.ptp(np.stack([c.center for c in cams]), axis=0)) + 1e-6
    for k, cam in enumerate(cams):
        c2w = cam.c2w
        handle = state.client.scene.add_camera_frustum(
            f"/cameras/{k}",
            fov=2 * math.atan(0.5 * cam.height / cam.fy),
            aspect=cam.width / cam.height,
            scale=0.03 * extent,
            wxyz=rotmat_to_quat(c2w[:3, :3]),
            position=c2w[:3, 3],
            color=(60, 120, 220),
        )
        handle.on_click(lambda event, cam=cam: jump_to(state.client, cam))
        state.frustums.append(handle)


def jump_to(client, cam: Camera) -> None:
    c2w = cam.c2w
    with client.atomic():
        client.camera.wxyz = rotmat_to_quat(c2w[:3, :3])
        client.camera.position = c2w[:3, 3]
        client.camera.fov = 2 * math.atan(0.5 * cam.height / cam.fy)
