"""The camera path of a capture taken as one walk (a phone video, a sequence of stills): jumps, and
the folds that a reconstruction makes of a symmetric object.

From one image to the next such a camera moves a little. Where a reconstruction puts two
consecutive images far apart, it has gone wrong between them. The way it goes wrong most often
on an object captured from all round: when the object looks the same half a turn round (a can
printed twice round its side, a vase), COLMAP registers the far side of the walk as the near
side, turned half a turn about the object. The object fits either way; the room behind it does
not, and training then paints the door seen from one side over the stairs seen from the other.
The camera path shows it: it jumps at every crossing between the two halves, and one rigid
motion, the same at every crossing, closes all the jumps. That motion is the fold, and undoing it
is a rigid motion of the stretches on one side (and of the sparse points they saw).

One jump alone is not repaired: a second video, or a restarted walk, jumps too, and any one jump
can be closed by some motion. Two or more jumps closed by one motion to within the path's own
step are not a coincidence.
"""

from __future__ import annotations

import dataclasses
from pathlib import PurePosixPath

import numpy as np

from .base import natural_key

JUMP_FACTOR = 6.0  # a step this many times the path's median step is a jump
MIN_STRETCH = 3  # images on each side of a jump, to extrapolate the motion across it
CLOSE_FACTOR = 2.5  # a repaired jump is at most this many median steps (in position and turn)
MIN_IMAGES = 12
MAX_JUMP_SHARE = 0.1  # more jumps than this share of the steps: the name order is not the walk's


@dataclasses.dataclass
class PathCheck:
    """What `check_path` found in a sequence of camera-to-world poses (in image-name order)."""

    jumps: list[int]  # index i: the camera jumps between image i-1 and image i
    jump_ratios: list[float]  # each jump's step over the median step
    fold: np.ndarray | None = None  # 4x4 rigid motion mapping the odd stretches onto the even ones
    folded: np.ndarray | None = None  # bool per image: in an odd stretch (moved by the fold)

    @property
    def fold_degrees(self) -> float:
        return float(np.degrees(_rotation_angle(np.eye(4), self.fold)))


def _rotation_angle(a: np.ndarray, b: np.ndarray) -> float:
    """The angle (radians) of the rotation between two poses."""
    R = a[:3, :3].T @ b[:3, :3]
    return float(np.arccos(np.clip((np.trace(R) - 1) / 2, -1.0, 1.0)))


def path_steps(c2w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distances and turns (radians) between consecutive poses."""
    moves = np.linalg.norm(np.diff(c2w[:, :3, 3], axis=0), axis=1)
    turns = np.array([_rotation_angle(c2w[i], c2w[i + 1]) for i in range(len(c2w) - 1)])
    return moves, turns


def _extrapolate(before: np.ndarray, last: np.ndarray) -> np.ndarray:
    """The pose one step after `last`, moving as from `before` to `last`."""
    return last @ np.linalg.inv(before) @ last


def _frame_points(c2w: np.ndarray, length: float) -> np.ndarray:
    """A pose as four points: its centre and the tips of its axes (for rigid fitting)."""
    return np.vstack([c2w[:3, 3], c2w[:3, 3] + length * c2w[:3, :3].T])


def similarity(src: np.ndarray, dst: np.ndarray, scale: bool = True) -> tuple[float, np.ndarray, np.ndarray]:
    """(s, R, t) minimising sum |s R src_i + t - dst_i|^2 over (N, 3) point sets (Umeyama); with
    `scale` False, s = 1: the least-squares rigid motion (Kabsch)."""
    mu_s, mu_d = src.mean(axis=0), dst.mean(axis=0)
    a, b = src - mu_s, dst - mu_d
    U, sigma, Vt = np.linalg.svd(b.T @ a / len(src))
    E = np.eye(3)
    E[2, 2] = np.sign(np.linalg.det(U @ Vt))
    R = U @ E @ Vt
    s = float((sigma * np.diag(E)).sum() / (a * a).sum(axis=1).mean()) if scale else 1.0
    return s, R, mu_d - s * R @ mu_s


def _rigid_fit(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares rigid motion taking points src onto dst, as a 4x4 matrix."""
    _, R, t = similarity(src, dst, scale=False)
    T = np.eye(4)
    T[:3, :3], T[:3, 3] = R, t
    return T


def check_path(c2w: np.ndarray) -> PathCheck:
    """Jumps in a camera path (N, 4, 4 camera-to-world, image-name order), and the fold that closes
    them all when there is one. Captures whose images are not a walk (turntable renders in random
    order) have no step much larger than their median step, so they show no jumps."""
    c2w = np.asarray(c2w, dtype=np.float64)
    if len(c2w) < MIN_IMAGES:
        return PathCheck([], [])
    moves, turns = path_steps(c2w)
    median_move = float(np.median(moves))
    if median_move <= 0:
        return PathCheck([], [])
    jumps = [i + 1 for i, m in enumerate(moves) if m > JUMP_FACTOR * median_move]
    if len(jumps) > MAX_JUMP_SHARE * len(moves):
        return PathCheck([], [])
    check = PathCheck(jumps, [round(float(moves[i - 1] / median_move), 1) for i in jumps])
    edges = [0, *jumps, len(c2w)]
    if len(jumps) < 2 or min(b - a for a, b in zip(edges, edges[1:])) < MIN_STRETCH:
        return check
    folded = np.zeros(len(c2w), dtype=bool)
    for k, (a, b) in enumerate(zip(edges, edges[1:])):
        folded[a:b] = k % 2 == 1
    # Each jump, seen from either side: the pose the motion before it predicts, against the pose
    # the reconstruction gave. The fold takes the odd stretch's poses onto the even one's.
    length = median_move * 4
    src, dst = [], []
    for i in jumps:
        ahead = _extrapolate(c2w[i - 2], c2w[i - 1])  # image i, in the frame of the stretch before it
        behind = _extrapolate(c2w[i + 1], c2w[i])  # image i-1, in the frame of the stretch after it
        for left, right in ((ahead, c2w[i]), (c2w[i - 1], behind)):  # one image in both frames
            odd, even = (left, right) if folded[i - 1] else (right, left)
            src.append(_frame_points(odd, length))
            dst.append(_frame_points(even, length))
    fold = _rigid_fit(np.vstack(src), np.vstack(dst))
    repaired = np.array([fold @ p if f else p for p, f in zip(c2w, folded)])
    new_moves, new_turns = path_steps(repaired)
    median_turn = max(float(np.median(turns)), 1e-6)
    closed = all(
        new_moves[i - 1] <= CLOSE_FACTOR * median_move and new_turns[i - 1] <= CLOSE_FACTOR * median_turn for i in jumps
    )
    if closed:
        check.fold, check.folded = fold, folded
    return check


def unfold_points(xyz: np.ndarray, fold: np.ndarray, seen_by_folded, seen_by_other):
    """(xyz, source): the sparse points in the repaired frame, and for each the index of the point
    it came from. A point seen only from the folded stretches moves with them; one seen from both
    sides lies on the symmetric object and belongs on both sides (kept, plus a moved copy); one
    seen only from the other side stays. Without tracks (None), every point counts as seen from
    both sides."""
    n = len(xyz)
    folded = np.ones(n, bool) if seen_by_folded is None else np.asarray(seen_by_folded, bool)
    other = np.ones(n, bool) if seen_by_other is None else np.asarray(seen_by_other, bool)
    moved = xyz[folded].astype(np.float64) @ fold[:3, :3].T + fold[:3, 3]
    keep = other | ~folded
    source = np.concatenate([np.flatnonzero(keep), np.flatnonzero(folded)])
    return np.concatenate([xyz[keep], moved.astype(xyz.dtype)]), source


def check_capture_path(
    frames: list, points, observers: list | None = None, repair: bool = True
) -> tuple[list, tuple | None, list[str]]:
    """(frames, points, notes): a capture's frames with a fold undone (see the module's docstring),
    or as given with a warning when the path only jumps (or `repair` is off). `observers`: per
    sparse point, the indices of the frames that saw it (COLMAP tracks), None when unknown."""
    paths = {}  # one walk per folder (Blender's train/ and test/ are separate), in natural name order
    for i, f in enumerate(frames):
        paths.setdefault(str(PurePosixPath(f.name).parent), []).append(i)
    notes = []
    for order in paths.values():
        order.sort(key=lambda i: natural_key(frames[i].name))
        frames, points, observers, note = _check_walk(frames, order, points, observers, repair)
        notes += note
    return frames, points, notes


def _check_walk(frames: list, order: list[int], points, observers, repair: bool):
    """check_capture_path for the frames of one walk (indices `order`, in walking order)."""
    c2w = np.stack([frames[i].camera.c2w for i in order])
    check = check_path(c2w)
    if not check.jumps:
        return frames, points, observers, []
    names = [frames[i].name for i in order]
    where = ", ".join(f"{names[i - 1]} -> {names[i]}" for i in check.jumps)
    ratios = f"{min(check.jump_ratios):g}-{max(check.jump_ratios):g}" if len(check.jumps) > 1 else check.jump_ratios[0]
    jumped = f"the camera path jumps at {where} ({ratios}x its median step)"
    if check.fold is None:
        note = f"warning: {jumped}; if they were taken in one walk, the reconstruction is inconsistent there"
        return frames, points, observers, [note + " and views across a jump will disagree"]
    folded = (
        f"one rigid motion (a {check.fold_degrees:.0f} degree turn) closes every jump: the reconstruction "
        "folded a symmetric object onto itself"
    )
    if not repair:
        return frames, points, observers, [f"warning: {jumped}, and {folded}; --pose-repair auto repairs it"]
    moved = {order[k] for k in np.flatnonzero(check.folded)}
    inverse = np.linalg.inv(check.fold)
    frames = [
        dataclasses.replace(f, camera=dataclasses.replace(f.camera, viewmat=f.camera.viewmat @ inverse))
        if i in moved
        else f
        for i, f in enumerate(frames)
    ]
    note = f"camera poses repaired: {jumped}, and {folded}. {len(moved)} of {len(frames)} images turned back"
    if points is not None and len(points[0]):
        xyz, rgb = points
        seen_folded = seen_other = None
        if observers is not None:
            unknown = np.array([len(obs) == 0 for obs in observers], dtype=bool)  # a point without a track
            seen_folded = unknown | np.array([any(j in moved for j in obs) for obs in observers], dtype=bool)
            seen_other = unknown | np.array([any(j not in moved for j in obs) for obs in observers], dtype=bool)
        new_xyz, source = unfold_points(xyz, check.fold, seen_folded, seen_other)
        points = (new_xyz, rgb[source])
        observers = None if observers is None else [observers[k] for k in source]
        note += f"; the sparse points follow the images that saw them ({len(xyz):,} read, {len(new_xyz):,} placed)"
    return frames, points, observers, [note + " (--pose-repair off keeps the poses as given)"]
