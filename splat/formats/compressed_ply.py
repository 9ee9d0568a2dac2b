"""SuperSplat / PlayCanvas compressed PLY (`*.compressed.ply`): about 16 bytes per Gaussian plus
1 byte per higher SH coefficient, a quarter of the INRIA PLY.

Gaussians are sorted along a Morton curve and grouped in chunks of 256. Elements:
- `chunk` (ceil(N / 256) records, float32): min_x min_y min_z max_x max_y max_z, min_scale_x..z
  max_scale_x..z (log-scales, clamped to [-20, 20]) and min_r min_g min_b max_r max_g max_b (the
  DC colour 0.5 + SH_C0 * f_dc; older files stop after the 12 position / scale bounds and store
  colour as a plain [0, 1] value).
- `vertex` (N records, uint32): packed_position and packed_scale (11-10-11 bits of x, y, z
  normalised within the chunk's bounds, x in the top bits), packed_rotation (2 bits: index of the
  largest component of the unit wxyz quaternion, which is made positive and dropped; then the
  other three, in order, as 10 bits each of 0.5 + q / sqrt(2)), packed_color (8 bits each of
  r, g, b within the chunk's colour bounds and alpha = sigmoid(opacity), r in the top bits).
- optional `sh` (N records, uint8 f_rest_0..): INRIA's channel-major f_rest, each stored as
  trunc((f / 8 + 0.5) * 256) clipped to 0..255 and read back at the bucket centre; the range is
  [-4, 4] in steps of 1/32. Trailing bands that are zero everywhere are not written.
The frame is the PLY's (no axis change).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from splat.renderer.constants import SH_C0

from .common import fail, logit, morton_order, sh_degree_for, sigmoid, trim_sh_bands, unit_quats
from .ply_header import PlyHeader, read_binary_body, read_header

CHUNK = 256
BOUNDS = [
    "min_x",
    "min_y",
    "min_z",
    "max_x",
    "max_y",
    "max_z",
    "min_scale_x",
    "min_scale_y",
    "min_scale_z",
    "max_scale_x",
    "max_scale_y",
    "max_scale_z",
]
COLOR_BOUNDS = ["min_r", "min_g", "min_b", "max_r", "max_g", "max_b"]
PACKED = ["packed_position", "packed_rotation", "packed_scale", "packed_color"]
SH_RANGE = 8.0  # f_rest in [-4, 4]


def is_compressed(header: PlyHeader) -> bool:
    vertex = header.element("vertex")
    return header.element("chunk") is not None and vertex is not None and "packed_position" in vertex.names


def _unorm(x: np.ndarray, bits: int) -> np.ndarray:
    top = (1 << bits) - 1
    return np.clip(np.floor(x * top + 0.5), 0, top).astype(np.uint32)


def _pack_11_10_11(v: np.ndarray) -> np.ndarray:
    return (_unorm(v[:, 0], 11) << 21) | (_unorm(v[:, 1], 10) << 11) | _unorm(v[:, 2], 11)


def _unpack_11_10_11(p: np.ndarray) -> np.ndarray:
    return np.stack([(p >> 21) / 2047.0, ((p >> 11) & 1023) / 1023.0, (p & 2047) / 2047.0], 1)


def _chunk_bounds(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-chunk min and max of (N, D) values (the last chunk padded by repeating its last row)."""
    n_chunks = -(-len(values) // CHUNK)
    padded = np.concatenate([values, np.repeat(values[-1:], n_chunks * CHUNK - len(values), 0)])
    chunks = padded.reshape(n_chunks, CHUNK, -1)
    return chunks.min(1), chunks.max(1)


def _normalise(values, lo, hi):
    """values (N, D) relative to their chunk's [lo, hi] (chunks of CHUNK rows), in [0, 1]."""
    idx = np.arange(len(values)) // CHUNK
    span = hi[idx] - lo[idx]
    return np.where(span > 0, (values - lo[idx]) / np.where(span > 0, span, 1.0), 0.0)


def _pack_rotation(q: np.ndarray) -> np.ndarray:
    q = unit_quats(q)
    largest = np.abs(q).argmax(1)
    q = q * np.where(q[np.arange(len(q)), largest] < 0, -1.0, 1.0)[:, None]
    keep = np.array([[1, 2, 3], [0, 2, 3], [0, 1, 3], [0, 1, 2]])[largest]
    small = np.take_along_axis(q, keep, 1) * (np.sqrt(2.0) * 0.5) + 0.5
    packed = _unorm(small, 10)
    return (largest.astype(np.uint32) << 30) | (packed[:, 0] << 20) | (packed[:, 1] << 10) | packed[:, 2]


def _unpack_rotation(p: np.ndarray) -> np.ndarray:
    small = np.stack([(p >> 20) & 1023, (p >> 10) & 1023, p & 1023], 1) / 1023.0
    small = (small - 0.5) / (np.sqrt(2.0) * 0.5)
    largest = (p >> 30).astype(np.int64)
    q = np.zeros((len(p), 4))
    rest = np.array([[1, 2, 3], [0, 2, 3], [0, 1, 3], [0, 1, 2]])[largest]
    np.put_along_axis(q, rest, small, 1)
    q[np.arange(len(p)), largest] = np.sqrt(np.clip(1.0 - (small**2).sum(1), 0.0, None))
    return unit_quats(q)


def encode(splats: dict[str, np.ndarray]) -> bytes:
    order = morton_order(splats["means"])
    s = {k: v[order].astype(np.float64) for k, v in splats.items()}
    N = len(order)
    scales = np.clip(s["scales"], -20.0, 20.0)
    colors = 0.5 + SH_C0 * s["sh0"][:, 0, :]
    (pos_lo, pos_hi), (sc_lo, sc_hi), (col_lo, col_hi) = (_chunk_bounds(v) for v in (s["means"], scales, colors))
    chunk = np.concatenate([pos_lo, pos_hi, sc_lo, sc_hi, col_lo, col_hi], 1).astype("<f4")
    rgb = _normalise(colors, col_lo, col_hi)
    rgba = np.concatenate([rgb, sigmoid(s["opacities"])[:, None]], 1)
    vertex = np.stack(
        [
            _pack_11_10_11(_normalise(s["means"], pos_lo, pos_hi)),
            _pack_rotation(s["quats"]),
            _pack_11_10_11(_normalise(scales, sc_lo, sc_hi)),
            (_unorm(rgba[:, 0], 8) << 24)
            | (_unorm(rgba[:, 1], 8) << 16)
            | (_unorm(rgba[:, 2], 8) << 8)
            | _unorm(rgba[:, 3], 8),
        ],
        1,
    ).astype("<u4")
    f_rest = trim_sh_bands(s["shN"]).transpose(0, 2, 1).reshape(N, -1)  # channel-major, as INRIA's f_rest
    # readers decode byte n at its bucket's centre, (n + 0.5) / 256, so a value on a bucket edge
    # (0 among them) is equally far from two bytes: alternate them, so such values average out
    # instead of all moving by +1/64
    x = (f_rest / SH_RANGE + 0.5) * 256.0
    tie = (x == np.floor(x)) & ((np.arange(N)[:, None] + np.arange(f_rest.shape[1])[None]) % 2 == 1)
    sh = np.clip(np.floor(x) - tie, 0, 255).astype(np.uint8)

    lines = ["ply", "format binary_little_endian 1.0", "comment written by splat", f"element chunk {len(chunk)}"]
    lines += [f"property float {n}" for n in BOUNDS + COLOR_BOUNDS]
    lines += [f"element vertex {N}"] + [f"property uint {n}" for n in PACKED]
    if sh.shape[1]:
        lines += [f"element sh {N}"] + [f"property uchar f_rest_{j}" for j in range(sh.shape[1])]
    header = ("\n".join(lines + ["end_header"]) + "\n").encode("ascii")
    return header + chunk.tobytes() + vertex.tobytes() + (sh.tobytes() if sh.shape[1] else b"")


def read(path: Path, header: PlyHeader | None = None) -> dict[str, np.ndarray]:
    header = header or read_header(path)
    chunk_el, vertex_el, sh_el = header.element("chunk"), header.element("vertex"), header.element("sh")
    N = vertex_el.count
    if N == 0:
        raise fail(path, "the splat file holds 0 Gaussians")
    if chunk_el.count != -(-N // CHUNK):
        raise fail(path, f"{chunk_el.count} chunks do not match {N} Gaussians (chunks of {CHUNK})")
    missing = [n for n in BOUNDS if n not in chunk_el.names] + [n for n in PACKED if n not in vertex_el.names]
    if missing:
        raise fail(path, f"not a compressed splat PLY (missing properties: {', '.join(missing)})")
    if sh_el is not None and sh_el.count != N:
        raise fail(path, f"{sh_el.count} SH records do not match {N} Gaussians")
    body = read_binary_body(path, header)
    ch, v = body["chunk"], body["vertex"]
    idx = np.arange(N) // CHUNK

    def lerp(names_lo, names_hi, t):
        lo = np.stack([ch[n].astype(np.float64) for n in names_lo], 1)[idx]
        hi = np.stack([ch[n].astype(np.float64) for n in names_hi], 1)[idx]
        return lo + (hi - lo) * t

    means = lerp(BOUNDS[0:3], BOUNDS[3:6], _unpack_11_10_11(v["packed_position"]))
    scales = lerp(BOUNDS[6:9], BOUNDS[9:12], _unpack_11_10_11(v["packed_scale"]))
    c = v["packed_color"]
    rgba = np.stack([(c >> 24) & 255, (c >> 16) & 255, (c >> 8) & 255, c & 255], 1) / 255.0
    rgb = (
        lerp(COLOR_BOUNDS[0:3], COLOR_BOUNDS[3:6], rgba[:, :3])
        if set(COLOR_BOUNDS) <= set(chunk_el.names)
        else rgba[:, :3]
    )
    shN = np.zeros((N, 0, 3))
    if sh_el is not None and sh_el.properties:
        rest = sorted((n for n in sh_el.names if n.startswith("f_rest_")), key=lambda n: int(n[7:]))
        if len(rest) % 3 or len(rest) != len(sh_el.names):
            raise fail(path, f"{len(sh_el.names)} SH properties are not a multiple of 3 f_rest_* values")
        sh_degree_for(len(rest) // 3 + 1, path)
        f = np.stack([body["sh"][n].astype(np.float64) for n in rest], 1)
        f = ((f + 0.5) / 256.0 - 0.5) * SH_RANGE
        shN = f.reshape(N, 3, -1).transpose(0, 2, 1)
    return {
        "means": means.astype(np.float32),
        "scales": scales.astype(np.float32),
        "quats": _unpack_rotation(v["packed_rotation"]).astype(np.float32),
        "opacities": logit(rgba[:, 3]).astype(np.float32),
        "sh0": ((rgb[:, None, :] - 0.5) / SH_C0).astype(np.float32),
        "shN": shN.astype(np.float32),
    }
