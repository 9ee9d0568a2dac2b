"""How far estimated camera poses are from reference ones, after a similarity alignment.

The estimate's frame is arbitrary (structure from motion fixes neither scale nor origin), so the
estimated camera centres are first mapped onto the reference ones by the least-squares
similarity (Umeyama 1991); rotation errors are then the angles of R_ref^T (R_align R_est), centre
errors the distances after the alignment (the fraction of a length the caller chooses).
"""

from __future__ import annotations

import numpy as np

from ..capture_path import similarity

__all__ = ["pose_errors", "rotation_angle_deg", "similarity"]


def rotation_angle_deg(R: np.ndarray) -> float:
    return float(np.degrees(np.arccos(np.clip((np.trace(R) - 1.0) / 2.0, -1.0, 1.0))))


def pose_errors(estimate: dict, reference: dict, length: float | None = None) -> dict:
    """Errors of camera-to-world poses (name -> 4x4) over the names both hold. Centre errors are
    divided by `length` (default: the reference cameras' mean distance from their centroid)."""
    names = sorted(set(estimate) & set(reference))
    if len(names) < 3:
        raise ValueError(f"{len(names)} cameras in common; a similarity alignment needs 3")
    est = np.stack([np.asarray(estimate[n], dtype=np.float64) for n in names])
    ref = np.stack([np.asarray(reference[n], dtype=np.float64) for n in names])
    s, R, t = similarity(est[:, :3, 3], ref[:, :3, 3])
    centres = s * est[:, :3, 3] @ R.T + t
    if length is None:
        length = float(np.linalg.norm(ref[:, :3, 3] - ref[:, :3, 3].mean(axis=0), axis=1).mean())
    rot = np.array([rotation_angle_deg(r.T @ R @ e) for r, e in zip(ref[:, :3, :3], est[:, :3, :3])])
    centre = np.linalg.norm(centres - ref[:, :3, 3], axis=1) / length
    return {
        "cameras": len(names),
        "rotation_deg_median": float(np.median(rot)),
        "rotation_deg_max": float(rot.max()),
        "centre_median": float(np.median(centre)),
        "centre_max": float(centre.max()),
        "centre_unit": length,
    }
