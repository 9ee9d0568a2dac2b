"""`splat.Camera`: intrinsics + pose in the renderer's conventions, with constructors from the
common conventions (look-at, OpenGL camera-to-world as in Blender / nerfstudio, OpenCV extrinsics).
The one camera type: procedural scenes, trajectories, the viewer and dataset frames all use it.

Stored as the renderer wants it: `viewmat` world-to-camera 4x4 with OpenCV axes (x right, y down,
z forward) and pixel intrinsics fx, fy, cx, cy (pixel centres at integer + 0.5). `model` is the
projection (pinhole or orthographic); `lens` and `distortion` the lens distortion of the image
file it came from (datasets undistort images on load, so rendering and rays ignore it); `time`
the frame's time in dynamic scenes.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np
import torch

from . import rotation
from .errors import InputError

MAX_SIDE = 1 << 16  # pixels a side of a rendered image

OPENGL_TO_OPENCV = np.diag([1.0, -1.0, -1.0, 1.0])

DISTORTION_PARAMS = {  # lens model (COLMAP / nerfstudio names) -> its distortion coefficients
    "PINHOLE": (),
    "SIMPLE_RADIAL": ("k1",),
    "RADIAL": ("k1", "k2"),
    "OPENCV": ("k1", "k2", "p1", "p2", "k3"),
    "OPENCV_FISHEYE": ("k1", "k2", "k3", "k4"),
}


def focal_length(width: int, fov_x_degrees: float) -> float:
    """Pixels of focal length that give a horizontal field of view of `fov_x_degrees`."""
    return 0.5 * width / math.tan(math.radians(fov_x_degrees) / 2)


def rotmat_to_quat(R: np.ndarray) -> np.ndarray:
    """wxyz unit quaternion (w >= 0) of a 3x3 rotation matrix (splat.rotation.rotmats_to_quats)."""
    R = torch.from_numpy(np.asarray(R, dtype=np.float64).reshape(1, 3, 3))
    return rotation.rotmats_to_quats(R)[0].numpy()


def quat_to_rotmat(q) -> np.ndarray:
    """3x3 rotation matrix of a (not necessarily unit) wxyz quaternion (splat.rotation.quat_to_rotmat)."""
    q = np.asarray(q, dtype=np.float64)
    return rotation.quat_to_rotmat(torch.from_numpy(q / np.linalg.norm(q))).numpy()


def _as_matrix(m, shape=(4, 4)) -> np.ndarray:
    a = np.array(m.detach().cpu() if isinstance(m, torch.Tensor) else m, dtype=np.float64)  # a copy: cameras own theirs
    if a.shape == (3, 4) and shape == (4, 4):
        a = np.vstack([a, [0.0, 0.0, 0.0, 1.0]])
    if a.shape != shape or not np.isfinite(a).all():
        raise InputError(f"expected a finite {shape[0]}x{shape[1]} matrix, got shape {a.shape}")
    return a


@dataclasses.dataclass(frozen=True)
class Camera:
    width: int
    height: int
    fx: float
    fy: float
    cx: float
    cy: float
    viewmat: np.ndarray  # (4, 4) float64 world -> camera, OpenCV axes
    model: str = "pinhole"  # projection: "pinhole" or "ortho" (fx, fy: pixels per world unit)
    lens: str = "PINHOLE"  # lens distortion of the source image (a DISTORTION_PARAMS key)
    distortion: tuple[float, ...] = ()  # values for DISTORTION_PARAMS[lens]
    time: float | None = None  # dynamic scenes: normalised time in [0, 1]

    def __post_init__(self):
        if self.width < 1 or self.height < 1:
            raise InputError(f"camera size must be positive, got {self.width}x{self.height}")
        if self.width > MAX_SIDE or self.height > MAX_SIDE:
            raise InputError(f"camera size {self.width}x{self.height}: at most {MAX_SIDE} pixels a side")
        if not (self.fx > 0 and self.fy > 0):
            raise InputError(f"focal lengths must be positive, got fx={self.fx}, fy={self.fy}")
        if self.model not in ("pinhole", "ortho"):
            raise InputError(f"camera model must be 'pinhole' or 'ortho', got {self.model!r}")
        if self.lens not in DISTORTION_PARAMS:
            raise InputError(f"camera lens {self.lens!r} is not supported ({', '.join(DISTORTION_PARAMS)})")
        object.__setattr__(self, "distortion", tuple(float(k) for k in self.distortion))
        if len(self.distortion) != len(DISTORTION_PARAMS[self.lens]):
            names = ", ".join(DISTORTION_PARAMS[self.lens]) or "none"
            raise InputError(f"camera lens {self.lens} takes distortion ({names}), got {self.distortion}")
        object.__setattr__(self, "viewmat", _as_matrix(self.viewmat))

    # ---- constructors -------------------------------------------------------------------------

    @staticmethod
    def _focal(width: int, fov_x_degrees: float | None, fx: float | None) -> float:
        if fx is not None:
            return float(fx)
        if fov_x_degrees is None or not 0 < fov_x_degrees < 180:
            raise InputError(f"give fx or a horizontal field of view in (0, 180) degrees, got {fov_x_degrees}")
        return focal_length(width, fov_x_degrees)

    @classmethod
    def look_at(
        cls,
        eye: Sequence[float],
        target: Sequence[float],
        up: Sequence[float] = (0.0, 0.0, 1.0),
        *,
        width: int = 640,
        height: int = 480,
        fov_x: float = 60.0,
    ) -> Camera:
        """A pinhole camera at `eye` looking at `target`, `up` pointing up in the image."""
        eye, target, up = (np.asarray(v, dtype=np.float64) for v in (eye, target, up))
        forward = target - eye
        if np.linalg.norm(forward) < 1e-12:
            raise InputError("look_at: eye and target coincide")
        forward /= np.linalg.norm(forward)
        right = np.cross(forward, up)
        if np.linalg.norm(right) < 1e-9:
            right = np.cross(forward, [1.0, 0.0, 0.0] if abs(forward[0]) < 0.9 else [0.0, 1.0, 0.0])
        right /= np.linalg.norm(right)
        down = np.cross(forward, right)
        view = np.eye(4)
        view[:3, :3] = np.stack([right, down, forward])
        view[:3, 3] = -view[:3, :3] @ eye
        f = cls._focal(width, fov_x, None)
        return cls(width, height, f, f, width / 2, height / 2, view)

    @classmethod
    def from_c2w_opengl(
        cls,
        c2w,
        *,
        width: int,
        height: int,
        fx: float | None = None,
        fy: float | None = None,
        cx: float | None = None,
        cy: float | None = None,
        fov_x: float | None = None,
    ) -> Camera:
        """From a Blender / nerfstudio `transform_matrix` (camera-to-world, OpenGL axes)."""
        c2w_cv = _as_matrix(c2w) @ OPENGL_TO_OPENCV
        fx = cls._focal(width, fov_x, fx)
        return cls(
            width,
            height,
            fx,
            fy if fy is not None else fx,
            width / 2 if cx is None else cx,
            height / 2 if cy is None else cy,
            np.linalg.inv(c2w_cv),
        )

    @classmethod
    def from_opencv(
        cls,
        viewmat=None,
        *,
        K,
        width: int,
        height: int,
        R=None,
        t=None,
        lens: str = "PINHOLE",
        distortion: Sequence[float] = (),
        time: float | None = None,
    ) -> Camera:
        """From OpenCV / COLMAP extrinsics: a world-to-camera 4x4 (or 3x4), or R and t; `lens`,
        `distortion` and `time` as the fields of that name."""
        if viewmat is None:
            if R is None or t is None:
                raise InputError("from_opencv: give viewmat, or both R and t")
            viewmat = np.eye(4)
            viewmat[:3, :3] = _as_matrix(R, (3, 3))
            viewmat[:3, 3] = np.asarray(t, dtype=np.float64).reshape(3)
        K = _as_matrix(K, (3, 3))
        return cls(
            width, height, K[0, 0], K[1, 1], K[0, 2], K[1, 2], viewmat, lens=lens, distortion=distortion, time=time
        )

    @classmethod
    def ortho(
        cls, eye, target, up=(0.0, 0.0, 1.0), *, width: int = 640, height: int = 480, view_width: float = 2.0
    ) -> Camera:
        """An orthographic camera showing `view_width` world units across the image."""
        cam = cls.look_at(eye, target, up, width=width, height=height)
        scale = width / view_width
        return dataclasses.replace(cam, fx=scale, fy=scale, model="ortho")

    # ---- derived ------------------------------------------------------------------------------

    @property
    def K(self) -> np.ndarray:
        return np.array([[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]])

    @property
    def c2w(self) -> np.ndarray:
        """Camera-to-world, OpenCV axes."""
        return np.linalg.inv(self.viewmat)

    @property
    def c2w_opengl(self) -> np.ndarray:
        """Camera-to-world, OpenGL axes (a Blender / nerfstudio transform_matrix)."""
        return self.c2w @ OPENGL_TO_OPENCV

    @property
    def center(self) -> np.ndarray:
        return self.c2w[:3, 3]

    @property
    def fov_x(self) -> float:
        return math.degrees(2 * math.atan(0.5 * self.width / self.fx))

    def resized(self, width: int, height: int) -> Camera:
        """The same view on an image of another size: fx, cx scaled by width / self.width, fy, cy by
        height / self.height (exact for pixel centres at integer + 0.5: the image edges map onto the
        image edges)."""
        sx, sy = width / self.width, height / self.height
        return dataclasses.replace(
            self, width=width, height=height, fx=self.fx * sx, fy=self.fy * sy, cx=self.cx * sx, cy=self.cy * sy
        )

    def scaled(self, factor: float) -> Camera:
        """`resized` to `factor` times the size (rounded, at least one pixel)."""
        return self.resized(max(1, round(self.width * factor)), max(1, round(self.height * factor)))

    def with_pose(self, viewmat) -> Camera:
        return dataclasses.replace(self, viewmat=_as_matrix(viewmat))

    def project(self, points) -> np.ndarray:
        """Pixel coordinates (N, 2) of world points (N, 3) (for tests and overlays)."""
        p = np.asarray(points, dtype=np.float64) @ self.viewmat[:3, :3].T + self.viewmat[:3, 3]
        if self.model == "ortho":
            return np.stack([self.fx * p[:, 0] + self.cx, self.fy * p[:, 1] + self.cy], -1)
        return np.stack([self.fx * p[:, 0] / p[:, 2] + self.cx, self.fy * p[:, 1] / p[:, 2] + self.cy], -1)

    def rays(self, device=None, dtype=torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
        """`pixel_rays` of every pixel, row by row: world-space origins and unit directions (H*W, 3)."""
        ys, xs = torch.meshgrid(
            torch.arange(self.height, device=device), torch.arange(self.width, device=device), indexing="ij"
        )
        K = torch.as_tensor(self.K, dtype=dtype, device=device)
        view = torch.as_tensor(self.viewmat, dtype=dtype, device=device)
        return pixel_rays(torch.stack([xs.reshape(-1), ys.reshape(-1)], 1), K, view, self.model)


def pixel_rays(
    pixels: torch.Tensor, K: torch.Tensor, viewmat: torch.Tensor, model: str = "pinhole"
) -> tuple[torch.Tensor, torch.Tensor]:
    """World-space origins and unit directions (N, 3) of the rays through the centres of integer
    pixels (N, 2), in K's dtype: K (3, 3) and world-to-camera viewmat (4, 4) (OpenCV axes) shared,
    or one per pixel ((N, 3, 3), (N, 4, 4)). "pinhole" rays start at the camera centre; "ortho"
    rays run parallel to the optical axis from the camera's z = 0 plane. Lens distortion plays no
    part: datasets undistort their images on load, so every pixel is a pinhole pixel of K."""
    p = pixels.to(K.dtype) + 0.5
    x = (p[:, 0] - K[..., 0, 2]) / K[..., 0, 0]
    y = (p[:, 1] - K[..., 1, 2]) / K[..., 1, 1]
    R, tvec = viewmat[..., :3, :3], viewmat[..., :3, 3]
    if model == "ortho":
        plane = torch.stack([x, y, torch.zeros_like(x)], 1)
        origins = torch.einsum("...ji,...j->...i", R, plane - tvec)  # R^T (plane - t)
        return origins.contiguous(), R[..., 2, :].expand(origins.shape[0], 3).contiguous()
    d_cam = torch.stack([x, y, torch.ones_like(x)], 1)
    dirs = torch.nn.functional.normalize(torch.einsum("...ji,...j->...i", R, d_cam), dim=1)  # R^T d
    origins = -torch.einsum("...ji,...j->...i", R, tvec).expand(dirs.shape[0], 3)  # camera centres -R^T t
    return origins.contiguous(), dirs.contiguous()
