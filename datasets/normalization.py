"""The normalised world frame a dataset is trained in, and the point its cameras look at."""

from __future__ import annotations

import dataclasses

import numpy as np

from splat.camera import Camera


@dataclasses.dataclass
class Normalization:
    """world_normalised = scale * (world_original - center). Cameras keep their rotations
    (Gaussians: splat.gaussians.gaussians_to_original)."""

    center: np.ndarray
    scale: float

    def matrix(self) -> np.ndarray:
        m = np.eye(4) * self.scale
        m[3, 3] = 1.0
        m[:3, 3] = -self.scale * self.center
        return m

    @staticmethod
    def identity() -> Normalization:
        return Normalization(np.zeros(3), 1.0)

    def to_dict(self) -> dict:
        return {"center": [float(v) for v in self.center], "scale": float(self.scale)}

    @staticmethod
    def from_dict(d: dict) -> Normalization:
        return Normalization(np.asarray(d["center"], dtype=np.float64), float(d["scale"]))

    def viewmat_to_normalized(self, viewmat: np.ndarray) -> np.ndarray:
        """A world-to-camera matrix of the dataset's frame, re-expressed in the normalised frame
        (rotation kept; camera coordinates scale with the world)."""
        view = np.array(viewmat, dtype=np.float64)
        view[:3, 3] = self.scale * (view[:3, :3] @ self.center + view[:3, 3])
        return view

    def viewmat_to_original(self, viewmat: np.ndarray) -> np.ndarray:
        """A world-to-camera matrix of the normalised frame, re-expressed in the dataset's frame."""
        view = np.array(viewmat, dtype=np.float64)
        view[:3, 3] = view[:3, 3] / self.scale - view[:3, :3] @ self.center
        return view

    def camera_to_normalized(self, camera: Camera) -> Camera:
        """A camera of the dataset's frame in the normalised frame (an orthographic camera's
        pixels per world unit scale with the world)."""
        return _in_frame(camera, self.viewmat_to_normalized(camera.viewmat), 1.0 / self.scale)

    def camera_to_original(self, camera: Camera) -> Camera:
        """A camera of the normalised frame in the dataset's frame."""
        return _in_frame(camera, self.viewmat_to_original(camera.viewmat), self.scale)


def _in_frame(camera: Camera, viewmat: np.ndarray, world_scale: float) -> Camera:
    if camera.model == "ortho":
        return dataclasses.replace(camera, viewmat=viewmat, fx=camera.fx * world_scale, fy=camera.fy * world_scale)
    return camera.with_pose(viewmat)


def focus_point(centers: np.ndarray, forwards: np.ndarray) -> np.ndarray:
    """The point nearest to all cameras' optical axes (what an object-centric capture looks at),
    or the cameras' centroid when the axes are near parallel (forward-facing captures) or the
    point would lie behind most cameras."""
    centroid = centers.mean(axis=0)
    d = forwards / np.linalg.norm(forwards, axis=1, keepdims=True)
    P = np.eye(3)[None] - d[:, :, None] * d[:, None, :]  # projectors orthogonal to each axis
    A = P.sum(axis=0)
    if len(centers) < 2 or np.linalg.cond(A) > 1e4:
        return centroid
    p = np.linalg.solve(A, np.einsum("nij,nj->i", P, centers))
    in_front = (np.einsum("ni,ni->n", p - centers, d) > 0).mean()
    return p if in_front > 0.5 else centroid
