"""Where a capture's content lies: the kind of capture, the depth range of its content and its
scale, and random initial points inside the cameras' view frusta (for captures without points).

Three kinds, told apart by the cameras alone:
- "object": inward-facing (360 degrees around something; Blender, most phone orbits). The
  content sits around the point the optical axes meet; the scale is the cameras' distance to it
  (INRIA 3DGS's convention).
- "forward": forward-facing (LLFF): near-parallel optical axes. The content lies between a near
  and a far depth that the cameras' spread says nothing about; the scale is its typical depth.
- "unbounded": the cameras look outward, away from their centroid (rooms, streets).

Depth ranges come from the data where it has them (LLFF `poses_bounds.npy` near/far, an
instant-ngp `aabb_scale` box), else from the cameras' frusta: content starts where the frusta
overlap and stops being measurable where the parallax over the whole capture falls below a pixel.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import torch

from splat.camera import pixel_rays

KINDS = ("object", "forward", "unbounded")
FORWARD_CONE_DEGREES = 40.0  # forward-facing: every optical axis within this angle of the mean
OBJECT_HALF_SIZE = 0.33  # object captures: content within this cube (x camera distance), as INRIA's random init
MAX_DEPTH_RATIO = 1000.0  # far / near cap (a nearly static capture has no measurable far limit)


@dataclasses.dataclass
class SceneBounds:
    """In the dataset's normalised frame. `near`/`far`: depths (camera z) of the content;
    `box_center`/`box_half`: a box that holds the content (object captures), or None."""

    kind: str
    near: float
    far: float
    source: str  # what the range comes from: "llff bounds", "aabb", "camera geometry"
    box_center: tuple[float, float, float] | None = None
    box_half: float | None = None
    background_fraction: float = 0.0  # share of random points outside the box, out to `background_far`
    background_far: float | None = None

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @staticmethod
    def from_dict(d: dict) -> SceneBounds:
        known = {f.name for f in dataclasses.fields(SceneBounds)}
        return SceneBounds(**{k: v for k, v in d.items() if k in known})

    def describe(self) -> str:
        box = f", content box +-{self.box_half:.2f}" if self.box_half else ""
        return f"{self.kind} capture, content depth {self.near:.3g}..{self.far:.3g} ({self.source}{box})"

    def sample_points(self, n: int, cameras: list, generator: torch.Generator) -> torch.Tensor:
        """n random points (float32 (n, 3)), each inside the view frustum of a random camera of
        `cameras` at a depth between near and far: uniform in depth for object captures (and kept
        inside their box), uniform in disparity otherwise (as LLFF's NDC space)."""
        if self.box_half is None:
            return frustum_points(n, cameras, generator, self.near, self.far, uniform_depth=False).float()
        n_background = int(round(n * self.background_fraction)) if self.background_far else 0
        n_box, found = n - n_background, []
        center = torch.tensor(self.box_center, dtype=torch.float64)
        for _ in range(64):  # rejection sampling: keep the frustum points inside the box
            have = sum(p.shape[0] for p in found)
            if have >= n_box:
                break
            pts = frustum_points(
                max(2 * (n_box - have), 1024), cameras, generator, self.near, self.far, uniform_depth=True
            )
            found.append(pts[((pts - center).abs() <= self.box_half).all(dim=1)][: n_box - have])
        n_background = n - sum(p.shape[0] for p in found)  # a box the cameras hardly see: the rest goes outside
        if n_background:
            far = self.background_far or self.far
            found.append(frustum_points(n_background, cameras, generator, self.near, far, uniform_depth=False))
        return torch.cat(found).float()


def frustum_points(
    m: int, cameras: list, generator: torch.Generator, near: float, far: float, uniform_depth: bool
) -> torch.Tensor:
    """m float64 points (m, 3), each in the view frustum of a random one of `cameras` (normalised
    frame), at a depth in [near, far]: uniform in depth, or else uniform in disparity."""
    which = torch.randint(len(cameras), (m,), generator=generator)
    u, v, s = torch.rand(3, m, generator=generator, dtype=torch.float64)
    if uniform_depth:
        z = near + (far - near) * s
    else:
        z = 1.0 / (1.0 / near + (1.0 / far - 1.0 / near) * s)
    Ks = torch.from_numpy(np.stack([c.K for c in cameras]))[which]
    views = torch.from_numpy(np.stack([c.viewmat for c in cameras]))[which]
    widths = torch.tensor([float(c.width) for c in cameras], dtype=torch.float64)[which]
    heights = torch.tensor([float(c.height) for c in cameras], dtype=torch.float64)[which]
    # a uniform position on the image (pixel_rays adds the half pixel to integer pixel indices)
    origins, dirs = pixel_rays(torch.stack([u * widths, v * heights], 1) - 0.5, Ks, views)
    along = z / (dirs * views[:, 2, :3]).sum(1)  # z is depth along the optical axis, not along the ray
    return origins + dirs * along[:, None]


def classify_capture(centers: np.ndarray, forwards: np.ndarray, focus: np.ndarray) -> str:
    """'object', 'forward' or 'unbounded' from camera centres, optical axes and the point the
    axes meet (`focus`, the centroid when they do not meet in front of the cameras)."""
    d = forwards / np.linalg.norm(forwards, axis=1, keepdims=True)
    centroid = centers.mean(axis=0)
    spread = float(np.linalg.norm(centers - centroid, axis=1).max()) if len(centers) > 1 else 0.0
    mean = d.sum(axis=0)
    if np.linalg.norm(mean) < 1e-6:
        return "unbounded" if _looks_outward(centers, d, centroid, spread) else "object"
    mean /= np.linalg.norm(mean)
    within_cone = float((d @ mean).min()) > math.cos(math.radians(FORWARD_CONE_DEGREES))
    if _looks_outward(centers, d, centroid, spread):
        return "unbounded"
    if within_cone:
        focus_distance = float(np.linalg.norm(focus - centroid))
        if np.allclose(focus, centroid) or focus_distance > 3.0 * max(spread, 1e-12):
            return "forward"
    return "object"


def _looks_outward(centers, d, centroid, spread) -> bool:
    if spread <= 0 or len(centers) < 3:
        return False
    radial = centers - centroid
    norm = np.linalg.norm(radial, axis=1)
    ok = norm > 0.2 * spread
    if ok.sum() < 3:
        return False
    return float(np.einsum("ni,ni->n", d[ok], radial[ok] / norm[ok, None]).mean()) > 0.5


def frustum_depth_range(centers: np.ndarray, Ks: list[np.ndarray], sizes: list[tuple[int, int]]) -> tuple[float, float]:
    """Depths (original units) where content is measurable by these cameras: from where their
    frusta overlap across the capture's baseline, to where the parallax over that baseline falls
    under one pixel. With no baseline (one camera, a tripod pan) the unit of the poses is used."""
    pairwise = np.linalg.norm(centers[:, None] - centers[None], axis=-1)
    baseline = float(pairwise.max()) if len(centers) > 1 else 0.0
    focal = float(np.median([K[0, 0] for K in Ks]))
    half_fov = min(math.atan2(w / 2.0, K[0, 0]) for K, (w, _) in zip(Ks, sizes))
    if baseline <= 1e-9:
        return 0.1, 0.1 * MAX_DEPTH_RATIO
    near = baseline / (2.0 * math.tan(half_fov))
    far = min(focal * baseline, near * MAX_DEPTH_RATIO)
    return near, max(far, 2.0 * near)


def harmonic_mid(near: float, far: float) -> float:
    """The median depth of content spread uniformly in disparity between near and far."""
    return 2.0 / (1.0 / near + 1.0 / far)


def estimate_bounds(frames: list, focus: np.ndarray, box: dict | None = None) -> tuple[np.ndarray, float, SceneBounds]:
    """For the training frames of a capture without points: (normalisation centre, unit length,
    SceneBounds in the dataset's units). The unit is the scene scale: the cameras' distance to
    the centre for object captures (INRIA's), the typical content depth otherwise."""
    cams = [f.camera for f in frames]
    centers = np.stack([c.center for c in cams])
    forwards = np.stack([c.viewmat[2, :3] for c in cams])
    kind = classify_capture(centers, forwards, focus)
    if box is not None or (kind == "object" and not any(f.near for f in frames)):
        # content inside a box: instant-ngp's unit cube (aabb_scale widens it), or INRIA's cube
        center = focus if box is None else np.asarray(box["center"], dtype=np.float64)
        dist = np.linalg.norm(centers - center, axis=1)
        unit = float(dist.max()) if dist.max() > 0 else 1.0
        half = OBJECT_HALF_SIZE * unit if box is None else float(box["half"])
        reach = half * math.sqrt(3.0)
        near, far = max(float(dist.min()) - reach, 1e-3 * unit), float(dist.max()) + reach
        aabb_scale = 1.0 if box is None else box["aabb_scale"]
        source = "camera geometry" if box is None else "transforms.json scene box"
        bounds = SceneBounds(
            kind,
            near,
            far,
            source,
            tuple(float(v) for v in center),
            half,
            background_fraction=0.2 if aabb_scale > 1 else 0.0,
            background_far=float(dist.max()) + aabb_scale * reach if aabb_scale > 1 else None,
        )
        return center, unit, bounds
    with_bounds = [f for f in frames if f.near is not None and f.far is not None]
    if with_bounds:
        near, far, source = 0.9 * min(f.near for f in with_bounds), max(f.far for f in with_bounds), "poses_bounds.npy"
    else:
        near, far = frustum_depth_range(centers, [c.K for c in cams], [(c.width, c.height) for c in cams])
        source = "camera frusta"
    if kind == "object":
        return focus, float(np.linalg.norm(centers - focus, axis=1).max()), SceneBounds(kind, near, far, source)
    d = forwards / np.linalg.norm(forwards, axis=1, keepdims=True)
    mean_dir = d.sum(axis=0) / max(float(np.linalg.norm(d.sum(axis=0))), 1e-12)
    mid = harmonic_mid(near, far)
    center = centers.mean(axis=0) + (mean_dir * mid if kind == "forward" else 0.0)
    return center, mid, SceneBounds(kind, near, far, source)


def normalized_bounds(bounds: SceneBounds, center: np.ndarray, scale: float) -> SceneBounds:
    """`bounds` (dataset units) in the frame world_normalised = scale * (world - center)."""
    box_center = (
        None if bounds.box_center is None else tuple(float(v) for v in scale * (np.asarray(bounds.box_center) - center))
    )
    return dataclasses.replace(
        bounds,
        near=bounds.near * scale,
        far=bounds.far * scale,
        box_center=box_center,
        box_half=None if bounds.box_half is None else bounds.box_half * scale,
        background_far=None if bounds.background_far is None else bounds.background_far * scale,
    )
