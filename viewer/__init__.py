"""The viser web viewer: `splat view` and `splat train --viewer`."""

from __future__ import annotations


def live_scene(trainer):
    """A callable giving the training run's current model as a scene (GaussianScene or
    FieldScene, in the training frame) with the dataset's cameras, for the viewer."""
    from splat.camera import Camera
    from splat.scene import GaussianScene

    cams = []
    for f in trainer.data.frames:
        K = f.camera.K
        cams.append(Camera(f.camera.width, f.camera.height, K[0, 0], K[1, 1], K[0, 2], K[1, 2], f.camera.viewmat))

    if hasattr(trainer, "field"):
        from splat.datasets import Normalization
        from splat.field_scene import FieldScene

        def current_field():
            return FieldScene(trainer.field, trainer.grid, Normalization.identity(), cameras=cams, source="training")

        return current_field

    def current():
        return GaussianScene({k: v for k, v in trainer.params.items()}, cameras=cams, source="training")

    return current
