"""The viser web viewer: `splat view` and `splat train --viewer`."""

from __future__ import annotations

DEFAULT_MAX_SPLATS = 1_000_000  # the browser renderer's budget: ~32 MB on the socket, fine for a laptop GPU


def live_scene(trainer):
    """A callable giving the training run's current model as a scene (GaussianScene or
    FieldScene, in the training frame) with the dataset's cameras, for the viewer."""
    cams = [f.camera for f in trainer.data.frames]

    def current():
        return trainer.scene(cams)

    return current
