#!/usr/bin/env python
"""The camera path of a shared capture as its COLMAP model gives it, and what the path check
(splat.datasets.capture_path) makes of it: the steps and turns at each jump, the fold, the same
steps after the repair, and how far the fold's axis lies from the axis of a circle fitted to the
sparse points seen from both sides (for beer: the can; the fold axis should be its axis).

    python bench/capture_path.py beer

Writes bench/results/capture_path_<scene>-cpu.json. Takes a second: no training.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
from common import SCENES, header, results_dir, shared_data, write_result


def circle_offset(points: np.ndarray, fold: np.ndarray) -> dict:
    """Distance from the fold's axis to the centre of a least-squares circle through the points
    projected along that axis, and the circle's radius (world units of the COLMAP model)."""
    R = fold[:3, :3]
    w, v = np.linalg.eig(R)
    axis = np.real(v[:, np.argmin(abs(w - 1))])
    axis /= np.linalg.norm(axis)
    on_axis = np.linalg.lstsq(np.eye(3) - R, fold[:3, 3], rcond=None)[0]
    e1 = np.cross(axis, [1.0, 0.0, 0.0] if abs(axis[0]) < 0.9 else [0.0, 1.0, 0.0])
    e1 /= np.linalg.norm(e1)
    e2 = np.cross(axis, e1)
    q = np.stack([(points - on_axis) @ e1, (points - on_axis) @ e2], axis=1)
    a, b, c = np.linalg.lstsq(np.c_[2 * q, np.ones(len(q))], (q**2).sum(1), rcond=None)[0]
    return {"axis_to_circle_centre": float(np.hypot(a, b)), "circle_radius": float(np.sqrt(c + a * a + b * b))}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("scene", choices=sorted(SCENES))
    args = p.parse_args(argv)
    data = shared_data(SCENES[args.scene])
    if data is None:
        return 1
    from splat.datasets.capture_path import check_path, path_steps
    from splat.datasets.colmap import find_model_dir, read_images, read_points

    model = find_model_dir(data)
    if model is None:
        print(f"{data}: no COLMAP model", file=sys.stderr)
        return 1
    images = sorted(read_images(model))
    names = [name for name, *_ in images]
    c2w = np.stack([np.linalg.inv(view) for _, _, view, _ in images])
    check = check_path(c2w)
    moves, turns = path_steps(c2w)
    result = {
        **header("capture_path", "cpu"),
        "scene": args.scene,
        "images": len(names),
        "median_step": float(np.median(moves)),
        "median_turn_degrees": float(np.degrees(np.median(turns))),
        "jumps": [
            {
                "between": [names[i - 1], names[i]],
                "step": float(moves[i - 1]),
                "turn_degrees": float(np.degrees(turns[i - 1])),
            }
            for i in check.jumps
        ],
        "fold_degrees": None if check.fold is None else check.fold_degrees,
    }
    if check.fold is not None:
        repaired = np.array([check.fold @ p if f else p for p, f in zip(c2w, check.folded)])
        new_moves, new_turns = path_steps(repaired)
        result["images_turned_back"] = int(check.folded.sum())
        result["after_repair"] = [
            {"step": float(new_moves[i - 1]), "turn_degrees": float(np.degrees(new_turns[i - 1]))} for i in check.jumps
        ]
        sparse = read_points(model)
        if sparse is not None:
            xyz, _, tracks = sparse
            side = {image_id: bool(f) for (*_, image_id), f in zip(images, check.folded)}
            both = np.array([len({side[i] for i in t.tolist() if i in side}) == 2 for t in tracks], dtype=bool)
            result["points_seen_from_both_sides"] = int(both.sum())
            result.update(circle_offset(xyz[both].astype(np.float64), check.fold))
    out = results_dir() / f"capture_path_{args.scene}-cpu.json"
    write_result(out, result)
    print({k: v for k, v in result.items() if k not in ("versions",)})
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
