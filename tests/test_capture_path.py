"""The camera path check (datasets/capture_path.py): jumps in a walk are reported, and a fold (a
symmetric object registered half a turn round) is undone exactly, while captures that are not
walks, or that jump for other reasons, are left as they are."""

from __future__ import annotations

import math
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import torch
from scene_fixtures import rotmat_to_qvec

from splat.datasets import load_dataset
from splat.datasets.base import Frame
from splat.datasets.capture_path import check_capture_path, check_path
from splat.scenes import look_at
from splat.train.config import TrainConfig

SHARED = Path(__file__).resolve().parents[1] / ".." / "shared" / "datasets"
CUTS = (14, 35, 53)  # where beer's COLMAP model folds


def walk(n=71, step_degrees=9.0, noise=0.0, seed=0):
    """Camera-to-world poses (n, 4, 4) of a walk round an object at the origin (1.8 turns for the
    defaults), looking at it: the same screw motion every step, unless `noise` jitters the eye
    (world units)."""
    g = np.random.default_rng(seed)
    poses = []
    for k in range(n):
        a = math.radians(20 + step_degrees * k)
        eye = np.array([4 * math.cos(a), 4 * math.sin(a), 1.5]) + noise * g.normal(size=3)
        poses.append(np.linalg.inv(look_at(tuple(eye), (0.0, 0.0, 0.3), dtype=torch.float64).numpy()))
    return np.stack(poses)


def turn(degrees: float, axis, through) -> np.ndarray:
    """4x4 rotation by `degrees` about the line through `through` along `axis`."""
    axis = np.asarray(axis, float) / np.linalg.norm(axis)
    K = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    a = math.radians(degrees)
    R = np.eye(3) + math.sin(a) * K + (1 - math.cos(a)) * K @ K
    T = np.eye(4)
    T[:3, :3] = R
    T[:3, 3] = np.asarray(through) - R @ np.asarray(through)
    return T


FOLD = turn(180.0, (0.05, -0.03, 1.0), (0.2, -0.1, 0.0))  # half a turn about a near-vertical axis


def odd_stretches(n: int, cuts=CUTS) -> np.ndarray:
    k = np.zeros(n, int)
    for c in cuts:
        k[c:] += 1
    return k % 2 == 1


def folded(poses: np.ndarray, cuts=CUTS, fold=FOLD) -> np.ndarray:
    odd = odd_stretches(len(poses), cuts)
    return np.array([fold @ p if o else p for p, o in zip(poses, odd)])


def test_fold_of_a_uniform_walk_is_undone_exactly():
    true = walk()
    check = check_path(folded(true))
    assert check.jumps == list(CUTS) and min(check.jump_ratios) > 6
    assert check.fold is not None and abs(check.fold_degrees - 180.0) < 1e-6
    # a uniform walk moves by the same screw motion every step, so the extrapolation is exact
    np.testing.assert_allclose(check.fold, np.linalg.inv(FOLD), atol=1e-9)
    assert (check.folded == odd_stretches(len(true))).all()


def test_fold_of_a_shaky_walk_is_found():
    true = walk(noise=0.08, seed=3)
    check = check_path(folded(true))
    assert check.jumps == list(CUTS) and check.fold is not None
    repaired = np.array([check.fold @ p if f else p for p, f in zip(folded(true), check.folded)])
    centres = np.linalg.norm(repaired[:, :3, 3] - true[:, :3, 3], axis=1)
    assert centres.max() < 0.3  # the walk's radius is 4, its step 0.63, the jumps 6-8


def test_one_jump_is_reported_not_repaired():
    """A second walk elsewhere (one jump): any one jump can be closed by some motion, so no repair."""
    poses = walk(40)
    poses[20:, :3, 3] += (6.0, 0.0, 0.0)
    check = check_path(poses)
    assert check.jumps == [20] and check.fold is None


def test_jumps_that_no_single_motion_closes_are_not_repaired():
    poses = walk()
    poses[CUTS[0] : CUTS[1], :3, 3] += (6.0, 0.0, 0.0)
    poses[CUTS[1] : CUTS[2], :3, 3] += (0.0, 7.0, 0.0)
    poses[CUTS[2] :, :3, 3] += (-5.0, -5.0, 0.0)
    check = check_path(poses)
    assert check.jumps == list(CUTS) and check.fold is None


def test_captures_that_are_not_walks_show_no_jumps():
    rng = np.random.default_rng(0)
    shuffled = walk()[rng.permutation(71)]  # turntable renders in random order
    assert check_path(shuffled).jumps == []
    # a fold of a shuffled capture cannot be told apart from the shuffle: left alone
    assert check_path(folded(shuffled)).fold is None


def frames_of(poses: np.ndarray, names=None) -> list[Frame]:
    from splat.camera import Camera

    names = names or [f"{k:04d}.jpg" for k in range(len(poses))]
    return [
        Frame(name, Path(name), Camera(8, 6, 8.0, 8.0, 4.0, 3.0, np.linalg.inv(p)), "train")
        for name, p in zip(names, poses)
    ]


def test_names_are_walked_in_natural_order():
    """r_2 comes before r_10: sorted as text, a walk named r_0..r_70 would jump everywhere."""
    names = [f"test/r_{k}.png" for k in range(71)]
    frames, _, notes = check_capture_path(frames_of(walk(), names), None)
    assert notes == []


def test_points_follow_the_images_that_saw_them():
    true = walk()
    odd = odd_stretches(71)
    even_image, odd_image = int(np.flatnonzero(~odd)[0]), int(np.flatnonzero(odd)[0])
    xyz = np.array([[0.5, 0.0, 0.3], [0.0, 0.5, 0.3], [0.2, 0.2, 0.6], [1.0, 1.0, 0.0]], np.float32)
    rgb = np.arange(12, dtype=np.uint8).reshape(4, 3)
    observers = [[even_image], [odd_image], [even_image, odd_image], []]  # the last: no track
    frames, (out_xyz, out_rgb), notes = check_capture_path(frames_of(folded(true)), (xyz, rgb), observers)
    assert len(notes) == 1 and notes[0].startswith("camera poses repaired")
    for f, p in zip(frames, true):
        np.testing.assert_allclose(np.linalg.inv(f.camera.viewmat), p, atol=1e-9)
    unfold = lambda p: (np.linalg.inv(FOLD)[:3, :3] @ p + np.linalg.inv(FOLD)[:3, 3]).astype(np.float32)  # noqa: E731
    expected = [xyz[0], xyz[2], xyz[3], unfold(xyz[1]), unfold(xyz[2]), unfold(xyz[3])]
    np.testing.assert_allclose(out_xyz, np.stack(expected), atol=1e-5)
    assert out_rgb.tolist() == rgb[[0, 2, 3, 1, 2, 3]].tolist()


def write_colmap_walk(root: Path, poses: np.ndarray, points: np.ndarray, tracks: list[list[int]]):
    """A COLMAP text model of the camera-to-world `poses` (tiny black images, one camera)."""
    sparse = root / "sparse" / "0"
    sparse.mkdir(parents=True)
    (root / "images").mkdir()
    (sparse / "cameras.txt").write_text("1 PINHOLE 16 12 14 14 8 6\n")
    lines = []
    for k, c2w in enumerate(poses):
        view = np.linalg.inv(c2w)
        values = (*rotmat_to_qvec(view[:3, :3]), *view[:3, 3])
        lines += [f"{k + 1} " + " ".join(repr(float(v)) for v in values) + f" 1 {k:04d}.png", ""]
        iio.imwrite(root / "images" / f"{k:04d}.png", np.zeros((12, 16, 3), np.uint8))
    (sparse / "images.txt").write_text("\n".join(lines) + "\n")
    rows = [
        f"{j + 1} {p[0]!r} {p[1]!r} {p[2]!r} 200 100 50 0.5 " + " ".join(f"{i + 1} 0" for i in track)
        for j, (p, track) in enumerate(zip(points.tolist(), tracks))
    ]
    (sparse / "points3D.txt").write_text("\n".join(rows) + "\n")


def test_loader_repairs_a_folded_colmap_model(tmp_path):
    """End to end: the folded model loads with the cameras (normalised) of the true one; with the
    repair off it loads as given, with a warning."""
    true = walk()
    odd = odd_stretches(71)
    points = np.array([[0.1, 0.2, 0.3], [-0.2, 0.1, 0.5]])
    tracks = [[0, 30], [1, 2]]  # image 30 lies in an odd stretch: the first point is on both sides
    write_colmap_walk(tmp_path / "true", true, points, tracks)
    write_colmap_walk(tmp_path / "folded", folded(true), points, tracks)
    reference = load_dataset(tmp_path / "true")
    repaired = load_dataset(tmp_path / "folded")
    assert odd[30] and not odd[0] and reference.notes == ()
    assert any(n.startswith("camera poses repaired") and "39 of 71 images" in n for n in repaired.notes)
    for a, b in zip(reference.frames, repaired.frames):
        np.testing.assert_allclose(b.camera.viewmat, a.camera.viewmat, atol=1e-6)
    assert repaired.points.shape == (3, 2 + 1)  # the point seen from both sides is placed on both
    as_given = load_dataset(tmp_path / "folded", repair_poses=False)
    assert any(n.startswith("warning: the camera path jumps") for n in as_given.notes)
    assert as_given.points.shape == (2, 3)


def test_runs_saved_before_the_repair_keep_their_poses():
    assert TrainConfig().pose_repair == "auto"
    assert TrainConfig.from_json({}).pose_repair == "off"  # an older config.json has no such key
    assert TrainConfig.from_json({"pose_repair": "auto"}).pose_repair == "auto"


@pytest.mark.skipif(not (SHARED / "beer").exists(), reason="../shared/datasets/beer is absent")
def test_beer_is_folded_and_repaired():
    from splat.datasets.colmap import read_images

    poses = np.stack([np.linalg.inv(v) for _, _, v, _ in sorted(read_images(SHARED / "beer" / "sparse" / "0"))])
    check = check_path(poses)
    assert check.jumps == list(CUTS) and check.fold is not None
    assert 170 < check.fold_degrees < 190 and check.folded.sum() == 39
    data = load_dataset(SHARED / "beer", downscale=4)
    centres = np.stack([f.camera.center for f in data.frames])
    steps = np.linalg.norm(np.diff(centres, axis=0), axis=1)
    assert steps.max() < 2.5 * np.median(steps)  # one walk again


def test_names_out_of_walking_order_show_no_jumps():
    """Where many steps jump (names sorted as text, r_1, r_10, r_100, ...), the name order is not
    the walk's: nothing is reported rather than a wall of jumps."""
    poses = walk(120, step_degrees=3.0)
    order = sorted(range(120), key=str)
    assert len(check_path(poses[order]).jumps) == 0
