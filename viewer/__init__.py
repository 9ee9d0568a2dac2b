"""The viser web viewer: `splat view` and `splat train --viewer`."""

from __future__ import annotations

DEFAULT_MAX_SPLATS = 1_000_000  # the browser renderer's budget: ~32 MB on the socket, fine for a laptop GPU


def live_scene(trainer):
    """A callable giving the training run's current model as a scene (GaussianScene or
    FieldScene, in the training frame) with the dataset's cameras, for the viewer."""
    from splat.camera import Camera

    cams = []
    for f in trainer.data.frames:
        K = f.camera.K
        cams.append(Camera(f.camera.width, f.camera.height, K[0, 0], K[1, 1], K[0, 2], K[1, 2], f.camera.viewmat))

    def current():
        return trainer.scene(cams)

    return current
