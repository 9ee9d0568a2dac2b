"""`SceneDataset`: the frames of one scene in a normalised world frame, with images decoded on demand."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import torch

from splat.camera import Camera

from .base import DatasetError, Frame
from .images import ImageCache, read_image, resize, undistort, undistortion_grid
from .normalization import Normalization, focus_point
from .scene_bounds import estimate_bounds, normalized_bounds


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
    def is_monocular(self) -> bool:
        """A dynamic scene filmed by one moving camera (D-NeRF): no two training frames share a time."""
        times = [self.frames[i].camera.time for i in self.train_indices]
        return self.is_dynamic and len(set(times)) == len(times)

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
