"""Niantic SPZ (`.spz`), read in versions 1-3 (one gzip stream) and 4 (ZSTD streams), written as
version 3 (gzip; every SPZ reader opens it) or 4.

Layout, after the nianticlabs/spz README and its reference loader (all little-endian):
- v1-3: gzip of a 16-byte header (magic "NGSP" = 0x5053474e, version u32, N u32, SH degree u8,
  fractional bits u8, flags u8, reserved u8) followed by the attribute blocks below, in order,
  and optional extension records (flag 0x2; skipped here).
- v4: a plain 32-byte header (magic, version, N, SH degree, fractional bits, flags, stream count
  u8, TOC offset u32, 12 reserved), extension records up to the TOC offset, a TOC of
  (compressed size u64, uncompressed size u64) per stream, then one ZSTD frame per non-empty
  attribute block, in the same order.
Attribute blocks: positions (3 x 24-bit signed fixed point with `fractional bits`; v1: 3 x float16),
alphas (u8, sigmoid(opacity) x 255), colours (3 x u8, f_dc x 0.15 x 255 + 127.5), scales
(3 x u8, (log-scale + 10) x 16), rotations (v3+: u32 "smallest three": 2 bits index of the largest
|component| of the unit xyzw quaternion, made positive and dropped, then for each other component
in order a sign bit and 9 bits of |q| / sqrt(1/2); v1-2: 3 x u8 of xyz with w >= 0, q x 127.5 +
127.5), SH (per Gaussian, coefficient-major with RGB inner, i.e. our (K-1, 3) order, each u8 of
f x 128 + 128; the writer keeps 5 bits of every band by default (the reference keeps 5 for
degree 1 and 4 for the rest: about 40 dB against the original render with SH, where 5 / 5 gives
43 dB at under 1/8 of the PLY, bench/formats.py), so the streams compress; trailing bands that are zero
everywhere are not written).

Coordinates: SPZ stores RUB (x right, y up, z back: OpenGL / three.js); splat scenes and PLY files
are RDF (OpenCV: y down, z forward), as the reference's PLY converters assume. Reading and writing
turn the frame by 180 degrees about x: y and z, the quaternion's y and z, and the SH bases odd in
y xor z change sign. SH degree 4 (v4) is read and its fourth band dropped (the renderer stops at 3).
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

from splat.camera import OPENGL_TO_OPENCV

from .common import fail, flip_axes, gunzip_bounded, logit, read_bytes, sigmoid, trim_sh_bands, unit_quats

MAGIC = 0x5053474E
RDF_TO_RUB = tuple(np.diag(OPENGL_TO_OPENCV)[:3])  # the OpenCV <-> OpenGL axis flip, for world axes
COLOR_SCALE = 0.15
LEGACY_HEADER = struct.Struct("<IIIBBBB")  # 16 bytes
HEADER_V4 = struct.Struct("<IIIBBBBI12s")  # 32 bytes
FLAG_ANTIALIASED, FLAG_EXTENSIONS = 0x1, 0x2
# Work per input byte is bounded by what a real file of that size holds: real SPZ files compress
# their attribute blocks about 1.3:1 (SH-free) to 2.3:1 (bench/results/formats-cpu.json), so a header
# whose blocks would exceed MAX_RAW_RATIO x the file size, beyond a small allowance every file gets
# (synthetic scenes of identical Gaussians compress far better), is refused before anything is
# inflated. Decoding then costs about 4 bytes of memory per attribute byte (chunks of DECODE_CHUNK).
MAX_RAW_RATIO = 8
FREE_RAW_BYTES = 16 << 20
DECODE_CHUNK = 1 << 14  # Gaussians decoded at a time (float64 temporaries stay small)
EXTENSION_ALLOWANCE = 1 << 20  # legacy extension records after the blocks (read, then ignored)


def is_spz(head: bytes) -> bool:
    return head[:2] == b"\x1f\x8b" or head[:4] == struct.pack("<I", MAGIC)


def _sh_dim(degree: int) -> int:
    return (degree + 1) ** 2 - 1


def _block_sizes(N: int, degree: int, version: int) -> list[int]:
    """Bytes of positions, alphas, colours, scales, rotations, SH."""
    return [N * (6 if version == 1 else 9), N, 3 * N, 3 * N, N * (4 if version >= 3 else 3), N * _sh_dim(degree) * 3]


# ------------------------------------------------------------------------------------------
# decoding
# ------------------------------------------------------------------------------------------


def _check_header(path, version: int, N: int, degree: int, lo: int = 1, hi: int = 4):
    if not lo <= version <= hi:
        raise fail(path, f"unsupported SPZ version {version}")
    if N == 0 or N > 2**31 - 1:
        raise fail(path, f"invalid SPZ point count {N}")
    if degree > 4:
        raise fail(path, f"unsupported SPZ SH degree {degree}")


def _check_size(path, N: int, degree: int, version: int, file_bytes: int) -> int:
    """The attribute bytes the header implies (refused when more than a real file holds)."""
    raw = sum(_block_sizes(N, degree, version))
    if raw > file_bytes * MAX_RAW_RATIO + FREE_RAW_BYTES:
        raise fail(
            path,
            f"header claims {N:,} Gaussians ({raw / 1e6:,.1f} MB of attributes), more than a {file_bytes:,}-byte "
            f"file can hold (real SPZ files compress about 2:1; at most {MAX_RAW_RATIO}:1 is read)",
        )
    return raw


def _decode_blocks(path, blocks: list, N: int, degree: int, version: int, fractional_bits: int):
    """The attribute blocks as float32 splats (RDF), decoded DECODE_CHUNK Gaussians at a time into
    the output arrays, so that temporaries never exceed a chunk's."""
    arrays = [np.frombuffer(b, np.uint8) for b in blocks]
    per = [len(a) // N for a in arrays]  # bytes per Gaussian of each block
    K = _sh_dim(degree)
    out = {
        "means": np.empty((N, 3), np.float32),
        "scales": np.empty((N, 3), np.float32),
        "quats": np.empty((N, 4), np.float32),
        "opacities": np.empty(N, np.float32),
        "sh0": np.empty((N, 1, 3), np.float32),
        "shN": np.empty((N, min(K, 15), 3), np.float32),  # bands 1-3 (degree 4 dropped)
    }
    for a in range(0, N, DECODE_CHUNK):
        b = min(a + DECODE_CHUNK, N)
        chunk = [arr[a * n : b * n] for arr, n in zip(arrays, per)]
        for k, v in _decode_chunk(chunk, b - a, K, version, fractional_bits).items():
            out[k][a:b] = v
    return out


def _decode_chunk(blocks: list[np.ndarray], N: int, K: int, version: int, fractional_bits: int):
    pos_b, alpha_b, color_b, scale_b, rot_b, sh_b = blocks
    if version == 1:
        means = pos_b.view("<f2").reshape(N, 3).astype(np.float64)
    else:
        p = pos_b.reshape(N, 3, 3).astype(np.int32)
        fixed = p[..., 0] | (p[..., 1] << 8) | (p[..., 2] << 16)
        fixed = np.where(fixed & 0x800000, fixed - (1 << 24), fixed)
        means = fixed / float(1 << fractional_bits)
    if version >= 3:
        r = rot_b.reshape(N, 4).astype(np.uint32)
        comp = r[:, 0] | (r[:, 1] << 8) | (r[:, 2] << 16) | (r[:, 3] << 24)
        largest = (comp >> 30).astype(np.int64)
        xyzw = np.zeros((N, 4))
        for i in range(3, -1, -1):  # the last-packed component sits in the low bits
            value = (comp & 511) / 511.0 * np.sqrt(0.5)
            value = np.where((comp >> 9) & 1, -value, value)
            here = largest != i
            xyzw[here, i] = value[here]
            comp = np.where(here, comp >> 10, comp)
        xyzw[np.arange(N), largest] = np.sqrt(np.clip(1.0 - (xyzw**2).sum(1), 0.0, None))
    else:
        xyz = rot_b.reshape(N, 3).astype(np.float64) / 127.5 - 1.0
        xyzw = np.concatenate([xyz, np.sqrt(np.clip(1.0 - (xyz**2).sum(1), 0.0, None))[:, None]], 1)
    sh = (sh_b.reshape(N, K, 3)[:, :15].astype(np.float32) - 128.0) / 128.0
    splats = {
        "means": means.astype(np.float32),
        "scales": (scale_b.reshape(N, 3) / 16.0 - 10.0).astype(np.float32),
        "quats": unit_quats(xyzw[:, [3, 0, 1, 2]]).astype(np.float32),
        "opacities": logit(alpha_b / 255.0).astype(np.float32),
        "sh0": ((color_b.reshape(N, 1, 3) / 255.0 - 0.5) / COLOR_SCALE).astype(np.float32),
        "shN": sh,
    }
    return flip_axes(splats, RDF_TO_RUB)  # RUB -> RDF (the flip is its own inverse)


def _read_legacy(path: Path, data: bytes):
    head = gunzip_bounded(path, data, LEGACY_HEADER.size)
    if len(head) < LEGACY_HEADER.size:
        raise fail(path, "truncated SPZ header")
    magic, version, N, degree, frac, flags, _ = LEGACY_HEADER.unpack(head)
    if magic != MAGIC:
        raise fail(path, "not an SPZ file (gzip data without the NGSP magic)")
    _check_header(path, version, N, degree, 1, 3)
    sizes = _block_sizes(N, degree, version)
    total = LEGACY_HEADER.size + _check_size(path, N, degree, version, len(data))
    raw = gunzip_bounded(path, data, total + (EXTENSION_ALLOWANCE if flags & FLAG_EXTENSIONS else 1))
    if len(raw) < total:
        raise fail(path, f"truncated: {N:,} Gaussians need {total:,} bytes, the data holds {len(raw):,}")
    offsets = np.cumsum([LEGACY_HEADER.size] + sizes)
    view = memoryview(raw)  # block views, not copies
    blocks = [view[a:b] for a, b in zip(offsets[:-1], offsets[1:])]
    return _decode_blocks(path, blocks, N, degree, version, frac)


def _zstd_decompress_bounded(path, frame: bytes, size: int) -> bytearray:
    try:
        import zstandard
    except ImportError:
        raise fail(path, "SPZ version 4 needs the 'zstandard' package (pip install zstandard)") from None
    out = bytearray(size + 1)  # one byte more than the table of contents says: a longer stream shows
    view, filled = memoryview(out), 0
    try:
        with zstandard.ZstdDecompressor().stream_reader(frame) as reader:
            while filled <= size:
                n = reader.readinto(view[filled:])
                if not n:
                    break
                filled += n
    except zstandard.ZstdError as e:
        raise fail(path, f"corrupt ZSTD stream ({e})") from None
    if filled != size:
        more = "more" if filled > size else f"{filled:,}"
        raise fail(path, f"a ZSTD stream holds {more} bytes, its table of contents says {size:,}")
    del view
    del out[size:]
    return out


def _read_v4(path: Path, data: bytes):
    if len(data) < HEADER_V4.size:
        raise fail(path, "truncated SPZ header")
    magic, version, N, degree, frac, flags, n_streams, toc, _ = HEADER_V4.unpack_from(data)
    _check_header(path, version, N, degree, 4, 4)
    _check_size(path, N, degree, version, len(data))
    sizes = [s for s in _block_sizes(N, degree, version) if s]
    if n_streams != len(sizes):
        raise fail(path, f"{n_streams} streams, expected {len(sizes)} for SH degree {degree}")
    if toc < HEADER_V4.size or toc + 16 * n_streams > len(data):
        raise fail(path, "truncated or malformed SPZ table of contents")
    entries = [struct.unpack_from("<QQ", data, toc + 16 * i) for i in range(n_streams)]
    start = toc + 16 * n_streams
    if start + sum(c for c, _ in entries) != len(data):
        raise fail(path, f"stream sizes in the table of contents do not add up to the file size ({len(data):,} bytes)")
    blocks = []
    for (compressed, size), expected in zip(entries, sizes):
        if size != expected:
            raise fail(path, f"a stream of {size:,} bytes does not match {N:,} Gaussians")
        blocks.append(_zstd_decompress_bounded(path, data[start : start + compressed], size))
        start += compressed
    if degree == 0:
        blocks.append(b"")
    return _decode_blocks(path, blocks, N, degree, version, frac)


def read(path: Path) -> dict[str, np.ndarray]:
    data = read_bytes(path)
    if data[:2] == b"\x1f\x8b":
        return _read_legacy(path, data)
    if len(data) >= 4 and struct.unpack_from("<I", data)[0] == MAGIC:
        return _read_v4(path, data)
    raise fail(path, "not an SPZ file (neither gzip nor the NGSP magic)")


# ------------------------------------------------------------------------------------------
# encoding
# ------------------------------------------------------------------------------------------


def _u8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.round(x), 0, 255).astype(np.uint8)


def _quantise_sh(f: np.ndarray, bits: int) -> np.ndarray:
    """f x 128 + 128 in 8 bits, rounded to a multiple of 2^(8 - bits) (0 stays exact)."""
    bucket = 1 << (8 - bits)
    q = np.round(f * 128.0) + 128.0
    q = np.floor((q + bucket // 2) / bucket) * bucket
    return np.clip(q, 0, 255).astype(np.uint8)


def encode_blocks(splats: dict[str, np.ndarray], version: int = 3, sh1_bits: int = 5, sh_rest_bits: int = 5):
    """Header fields and the six attribute blocks (RDF splats in, RUB blocks out)."""
    if not (1 <= sh1_bits <= 8 and 1 <= sh_rest_bits <= 8):
        raise ValueError(f"SPZ SH bits: expected 1..8, got sh1_bits={sh1_bits}, sh_rest_bits={sh_rest_bits}")
    s = flip_axes({**splats, "shN": trim_sh_bands(splats["shN"])}, RDF_TO_RUB)
    N = len(s["means"])
    degree = int(round(np.sqrt(s["shN"].shape[1] + 1))) - 1
    extent = float(np.abs(s["means"]).max()) if N else 0.0
    # as many fractional bits as keep every position inside 24-bit signed range (12 = 1/4 mm at
    # metre scale, the reference's choice, for scenes within +-2 km; more for small scenes)
    frac = int(np.clip(np.floor(np.log2((2**23 - 1) / max(extent, 1e-9))), 0, 16))
    fixed = np.round(s["means"].astype(np.float64) * (1 << frac)).astype(np.int64) & 0xFFFFFF
    positions = np.stack([fixed & 255, (fixed >> 8) & 255, fixed >> 16], -1).astype(np.uint8)
    q = unit_quats(s["quats"])[:, [1, 2, 3, 0]]  # xyzw
    largest = np.abs(q).argmax(1)
    q = q * np.where(q[np.arange(N), largest] < 0, -1.0, 1.0)[:, None]
    comp = largest.astype(np.uint64)
    for i in range(4):
        here = largest != i
        mag = np.floor(511.0 * np.abs(q[:, i]) / np.sqrt(0.5) + 0.5).astype(np.uint64)
        packed = (comp << np.uint64(10)) | ((q[:, i] < 0).astype(np.uint64) << np.uint64(9)) | mag
        comp = np.where(here, packed, comp)
    rotations = np.stack([(comp >> np.uint64(8 * b)) & np.uint64(255) for b in range(4)], -1).astype(np.uint8)
    sh = s["shN"].astype(np.float64)
    sh_q = np.concatenate([_quantise_sh(sh[:, :3], sh1_bits), _quantise_sh(sh[:, 3:], sh_rest_bits)], 1)
    blocks = [
        positions.tobytes(),
        _u8(sigmoid(s["opacities"]) * 255.0).tobytes(),
        _u8(s["sh0"][:, 0, :].astype(np.float64) * (COLOR_SCALE * 255.0) + 127.5).tobytes(),
        _u8((np.clip(s["scales"].astype(np.float64), -10.0, 6.0) + 10.0) * 16.0).tobytes(),
        rotations.tobytes(),
        sh_q.tobytes(),
    ]
    return (N, degree, frac), blocks


def encode(splats: dict[str, np.ndarray], version: int = 3, **sh_bits) -> bytes:
    import gzip

    (N, degree, frac), blocks = encode_blocks(splats, version, **sh_bits)
    if version == 3:
        raw = LEGACY_HEADER.pack(MAGIC, 3, N, degree, frac, 0, 0) + b"".join(blocks)
        return gzip.compress(raw, compresslevel=6, mtime=0)  # zlib's default, as the reference; 9 is 6x slower for 2%
    if version != 4:
        raise ValueError(f"SPZ version {version}: this writer writes version 3 (gzip) or 4 (ZSTD)")
    import zstandard

    frames = [zstandard.ZstdCompressor(level=12).compress(b) for b in blocks if b]
    toc = b"".join(struct.pack("<QQ", len(f), len(b)) for f, b in zip(frames, [b for b in blocks if b]))
    header = HEADER_V4.pack(MAGIC, 4, N, degree, frac, 0, len(frames), HEADER_V4.size, bytes(12))
    return header + toc + b"".join(frames)
