"""Posed-image datasets: format detection, loading, normalisation and lazily cached images.

    from splat.datasets import load_dataset
    data = load_dataset("path/to/scene")           # blender, nerfstudio, multiview, colmap or llff
    rgb, mask = data.image(data.train_indices[0])   # float (H, W, 3) in [0, 1], bool (H, W) or None

Formats (auto-detected; `format=` overrides): Blender / NeRF-synthetic (and D-NeRF),
nerfstudio `transforms.json`, multi-view video folders (`transforms.json` with a "cameras" list and
one frame folder per camera, see `multiview.py`), COLMAP `sparse/0`, LLFF `poses_bounds.npy`.
Dynamic scenes give every camera a `time` in [0, 1] (`is_dynamic`). Every problem with the
files raises `DatasetError` (a ValueError) whose one-line message names the file.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import torch

from splat.camera import Camera

from .base import DatasetError, Frame, natural_key
from .blender import load_blender
from .capture_path import check_capture_path
from .colmap import find_model_dir, load_colmap
from .images import ImageCache, read_image, resize, undistort, undistortion_grid
from .llff import load_llff
from .multiview import load_multiview, looks_like_multiview
from .nerfstudio import load_nerfstudio
from .scene_bounds import SceneBounds, estimate_bounds, normalized_bounds

FORMATS = ("blender", "nerfstudio", "multiview", "colmap", "llff")
__all__ = [
    "FORMATS",
    "DatasetError",
    "Frame",
    "Normalization",
    "SceneBounds",
    "SceneDataset",
    "auto_downscale",
    "detect_format",
    "load_dataset",
]


def detect_format(root: str | Path) -> str:
    root = Path(root)
    if not root.exists():
        raise DatasetError(f"{root}: no such directory")
    if not root.is_dir():
        raise DatasetError(f"{root}: not a directory")
    if (root / "transforms_train.json").exists():
        return "blender"
    if (root / "transforms.json").exists():
        return "multiview" if looks_like_multiview(root) else "nerfstudio"
    if (root / "poses_bounds.npy").exists():
        return "llff"
    if find_model_dir(root) is not None:
        return "colmap"
    raise DatasetError(
        f"{root}: unknown dataset format (expected transforms_train.json, transforms.json, "
        "poses_bounds.npy or a COLMAP sparse/0 model)"
    )


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


def _images_dir(root: Path, downscale: int) -> Path:
    """`images_N/` when it exists for the requested downscale, else `images/`. Cameras always
    describe the full-resolution images; the dataset scales them to the downscaled size."""
    if downscale > 1 and (root / f"images_{downscale}").is_dir():
        return root / f"images_{downscale}"
    return root / "images"


def _downscaled_folders(root: Path) -> list[int]:
    return sorted(
        int(p.name[7:]) for p in root.glob("images_*") if p.is_dir() and p.name[7:].isdigit() and int(p.name[7:]) > 1
    )


def _true_downscaled_folders(root: Path, frames: list[Frame]) -> list[int]:
    """The `images_N/` folders whose images are 1/N of their cameras' size (checked on the first
    image of each, matched to its frame by name where it can be): a folder holding anything else
    would be stretched, or shrunk twice."""
    from .images import image_size

    by_stem = {Path(f.name).stem: f.camera for f in frames}
    good = []
    for n in _downscaled_folders(root):
        files = sorted((p for p in (root / f"images_{n}").iterdir() if p.is_file()), key=lambda p: natural_key(p.name))
        if not files:
            continue
        cam = by_stem.get(files[0].stem, frames[0].camera)
        try:
            width, height = image_size(files[0])
        except DatasetError:
            continue
        if abs(width - cam.width / n) <= 1 and abs(height - cam.height / n) <= 1:
            good.append(n)
    return good


def auto_downscale(width: int, height: int, max_side: int, available: list[int] = ()) -> int:
    """The integer downscale that brings the longer image side to at most `max_side` pixels;
    the smallest pre-downscaled `images_N/` folder at least that large is preferred (LLFF
    captures ship images_4 / images_8 and a full-size folder that is slow to decode)."""
    need = max(1, math.ceil(max(width, height) / max_side))
    if need > 1:
        for n in sorted(available):
            if need <= n <= 2 * need:
                return n
    return need


class SceneDataset:
    """Frames of one scene in a normalised world frame, with images decoded on demand."""

    def __init__(
        self,
        root: Path,
        fmt: str,
        frames: list[Frame],
        points,
        *,
        downscale: int = 1,
        normalize: bool = True,
        background=(1.0, 1.0, 1.0),
        cache_bytes: int = 4 << 30,
        box: dict | None = None,
        notes: tuple[str, ...] = (),
    ):
        self.root = root
        self.format = fmt
        self.downscale = downscale
        self.background = torch.tensor(background, dtype=torch.float32)
        self.train_indices = [i for i, f in enumerate(frames) if f.split == "train"]
        self.test_indices = [i for i, f in enumerate(frames) if f.split == "test"]
        self.val_indices = [i for i, f in enumerate(frames) if f.split == "val"]  # scored apart from test
        if not self.train_indices:
            raise DatasetError(f"{root}: no training images")

        self.notes = tuple(notes)  # what the loader chose or dropped, for the start-up summary
        if not self.test_indices:
            self.notes += ("no test split: too few images to hold any out; evaluation uses the training images",)
        train_frames = [frames[i] for i in self.train_indices]
        centers = np.stack([f.camera.center for f in train_frames])
        forwards = np.stack([f.camera.viewmat[2, :3] for f in train_frames])  # optical axes
        center = focus_point(centers, forwards)
        has_points = points is not None and len(points[0]) > 0
        bounds = None
        if has_points:  # INRIA 3DGS: centred on the cameras' focus, scaled by their distance to it
            radius = float(np.linalg.norm(centers - center, axis=1).max())
        else:  # no points to start from: find where the content is (scene_bounds.py)
            center, radius, bounds = estimate_bounds(train_frames, center, box)
        self.normalization = (
            Normalization(center, 1.0 / radius) if (normalize and radius > 0) else Normalization.identity()
        )
        s, c = self.normalization.scale, self.normalization.center
        # depth range and kind of the capture in the normalised frame: where random points go
        self.bounds = None if bounds is None else normalized_bounds(bounds, c, s)
        self.frames = []
        for f in frames:
            cam = f.camera
            if downscale > 1:
                cam = cam.resized(max(1, round(cam.width / downscale)), max(1, round(cam.height / downscale)))
            self.frames.append(dataclasses.replace(f, camera=self.normalization.camera_to_normalized(cam)))
        self.extent = float(radius * s) if radius > 0 else 1.0  # the scene scale (1 once normalised)

        self.points = self.point_colors = None
        if points is not None and len(points[0]) > 0:
            xyz, rgb = points
            self.points = torch.from_numpy(s * (xyz.astype(np.float64) - c)).float()
            self.point_colors = torch.from_numpy(rgb.astype(np.float32) / 255.0)
        self._cache = ImageCache(cache_bytes)
        self._grids: dict = {}

    def __len__(self) -> int:
        return len(self.frames)

    @property
    def is_dynamic(self) -> bool:
        return any(f.camera.time is not None for f in self.frames)

    @property
    def kind(self) -> str:
        """What the scene is, for messages: "D-NeRF" for a Blender layout whose frames carry a time."""
        return "D-NeRF" if self.format == "blender" and self.is_dynamic else self.format

    def auto_background(self) -> str:
        """What `--background auto` trains and evaluates on: "white" when the images carry alpha
        (composited on white: NeRF-synthetic's and D-NeRF's metric); without alpha the background
        is in the pixels: for Blender layouts "white" when most pixels on the borders of the
        first training images are light (an RGB copy composited on white), else "black" (an RGB
        copy with the alpha dropped; photographs)."""
        first = self.train_indices[:8]
        if self.pixels(first[0])[0].shape[-1] == 4:
            return "white"
        if self.format != "blender":
            return "black"
        light = dark = 0
        for i in first:
            rgb = self.pixels(i)[0][..., :3].float().mean(dim=-1)
            border = torch.cat([rgb[0], rgb[-1], rgb[:, 0], rgb[:, -1]])
            light += int((border > 0.9 * 255).sum())
            dark += int((border < 0.1 * 255).sum())
        return "white" if light > dark else "black"

    def camera(self, i: int) -> Camera:
        return self.frames[i].camera

    def viewmat(self, i: int) -> torch.Tensor:
        return torch.from_numpy(self.frames[i].camera.viewmat).float()

    def K(self, i: int) -> torch.Tensor:
        return torch.from_numpy(self.frames[i].camera.K).float()

    def image(self, i: int, background: torch.Tensor | None = None):
        """(rgb float32 (H, W, 3) in [0, 1], valid mask bool (H, W) or None). RGBA images are
        composited over `background` (default: the dataset's background colour)."""
        pixels, mask = self.pixels(i)
        rgb = pixels.float() / 255.0
        if rgb.shape[-1] == 4:
            bg = self.background if background is None else background
            alpha = rgb[..., 3:]
            rgb = rgb[..., :3] * alpha + bg.to(rgb) * (1 - alpha)
        return rgb, mask

    def pixels(self, i: int):
        """(uint8 (H, W, 3 or 4) as stored (undistorted, resized), valid mask bool (H, W) or None)."""
        return self._cache.get(i, lambda: self._load(i))

    def verify_images(self, workers: int = 2) -> None:
        """Decode every image once (filling the cache as far as it goes), so that a missing or
        corrupt file stops a run before it starts rather than in the middle."""
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=workers) as pool:
            for _ in pool.map(self.image, range(len(self.frames))):
                pass

    def _load(self, i: int):
        frame = self.frames[i]
        cam = frame.camera
        img = torch.from_numpy(read_image(frame.image_path))
        if (img.shape[1], img.shape[0]) != (cam.width, cam.height):
            self._check_downscale(frame.image_path, img.shape[1], img.shape[0], cam)  # before any allocation
            img = (resize(img.float(), cam.width, cam.height) + 0.5).clamp(0, 255).to(torch.uint8)
        mask = None
        if cam.lens != "PINHOLE":
            key = (cam.width, cam.height, cam.lens, cam.distortion, tuple(cam.K.ravel()))
            if key not in self._grids:
                self._grids[key] = undistortion_grid(cam)
            grid, mask = self._grids[key]
            img = (undistort(img.float(), grid) + 0.5).clamp(0, 255).to(torch.uint8)
        if frame.mask_path is not None:
            m = torch.from_numpy(read_image(frame.mask_path))[..., 0].float()
            if (m.shape[1], m.shape[0]) != (cam.width, cam.height):
                self._check_downscale(frame.mask_path, m.shape[1], m.shape[0], cam)
            m = resize(m[..., None], cam.width, cam.height)[..., 0] > 127
            mask = m if mask is None else (mask & m)
        return img, mask

    def train_cameras(self) -> list[Camera]:
        return [self.frames[i].camera for i in self.train_indices]

    def _check_downscale(self, path, width: int, height: int, cam: Camera) -> None:
        """An image whose size is not the camera's is only used when it is an integer multiple of
        it (a full-size image for a downscaled camera: `--downscale N` without `images_N/`; to the
        rounding of the downscale); anything else would be stretched, so it is refused."""
        k = max(1, round(width / cam.width))
        slack = k if (k > 1 or self.downscale > 1) else 0  # rounding of W / N, either way
        if abs(width - k * cam.width) > slack or abs(height - k * cam.height) > slack:
            scaled = f" (after --downscale {self.downscale})" if self.downscale > 1 else ""
            raise DatasetError(
                f"{path}: image is {width}x{height} but its camera declares {cam.width}x{cam.height}"
                f"{scaled}; resize the image or fix the declared size"
            )

    def summary(self) -> str:
        pts = f", {len(self.points):,} points" if self.points is not None else ""
        bounds = f"; {self.bounds.describe()}" if self.bounds is not None else ""
        cam = self.frames[self.train_indices[0]].camera
        notes = "".join(f"\n  {note}" for note in self.notes)
        times = [f.camera.time for f in self.frames if f.camera.time is not None]
        over_time = f" {len(self.frames)} frames over time [{min(times):g}, {max(times):g}]," if times else ""
        val = f" / {len(self.val_indices)} val" if self.val_indices else ""
        return (
            f"{self.kind} scene {self.root}:{over_time} {len(self.train_indices)} train{val} / "
            f"{len(self.test_indices)} test images at {cam.width}x{cam.height}{pts}{bounds}{notes}"
        )


def load_dataset(
    root: str | Path,
    format: str | None = None,
    downscale: int = 1,
    normalize: bool = True,
    background=(1.0, 1.0, 1.0),
    test_every: int = 8,
    cache_bytes: int = 4 << 30,
    max_side: int = 1600,
    repair_poses: bool = True,
) -> SceneDataset:
    """Load a posed-image scene. Raises DatasetError (one line naming the file) on bad input.

    downscale 0 chooses one: the longer image side is brought to at most `max_side` pixels
    (`SceneDataset.downscale` and `.notes` say what was chosen). `repair_poses`: undo a fold of
    the camera path (capture_path.py) when one is found; a jumping path is reported either way."""
    root = Path(root)
    fmt = format or detect_format(root)
    if fmt not in FORMATS:
        raise DatasetError(f"{root}: unknown format {fmt!r} (choose from {', '.join(FORMATS)})")
    if not isinstance(downscale, int) or downscale < 0:
        raise DatasetError(f"{root}: downscale must be a positive integer (or 0: automatic), got {downscale!r}")
    if not root.is_dir():
        raise DatasetError(f"{root}: no such directory")
    notes: list[str] = []
    auto = downscale == 0
    if auto and fmt in ("colmap", "llff") and not (root / "images").is_dir() and _downscaled_folders(root):
        downscale = _downscaled_folders(root)[0]  # only pre-downscaled folders: start from the largest
    box = observers = None
    for attempt in range(2):
        images_dir = _images_dir(root, max(downscale, 1))
        if fmt == "blender":
            frames, points = load_blender(root)
        elif fmt == "nerfstudio":
            frames, points, extras = load_nerfstudio(root, test_every=test_every)
            box = extras["box"]
            if extras["dropped"] and attempt == 0:
                notes.append(
                    f"dropped {extras['dropped']} frame(s) of transforms.json: image missing or blurrier "
                    "than their neighbours (instant-ngp's sharpness rule)"
                )
        elif fmt == "multiview":
            frames, points = load_multiview(root)
        elif fmt == "colmap":
            frames, points, observers = load_colmap(root, images_dir, test_every=test_every)
        else:
            frames, points = load_llff(root, images_dir, test_every=test_every)
        if not auto:
            break
        auto = False
        width = max(f.camera.width for f in frames)
        height = max(f.camera.height for f in frames)
        # only the formats whose loaders read images_N/ prefer it (nerfstudio and Blender name their files)
        folders = _true_downscaled_folders(root, frames) if fmt in ("colmap", "llff") else []
        chosen = max(downscale, auto_downscale(width, height, max_side, folders))
        if chosen > 1:
            notes.append(
                f"downscale {chosen} chosen automatically: {width}x{height} images, at most {max_side} px "
                f"a side on this device (--downscale 1 keeps the full size)"
            )
        if _images_dir(root, chosen) == images_dir or fmt not in ("colmap", "llff"):
            downscale = chosen
            break
        downscale = chosen  # read the images_N folder that matches instead
    if not any(f.camera.time is not None for f in frames):  # a dynamic scene's cameras need not walk
        frames, points, path_notes = check_capture_path(frames, points, observers, repair=repair_poses)
        notes += path_notes
    return SceneDataset(
        root,
        fmt,
        frames,
        points,
        downscale=max(downscale, 1),
        normalize=normalize,
        background=background,
        cache_bytes=cache_bytes,
        box=box,
        notes=tuple(notes),
    )
