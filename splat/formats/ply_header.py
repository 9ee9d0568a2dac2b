"""A PLY header reader that checks the body's size before anything is read: the element counts
of a binary PLY fix its size, so a header that claims more than the file holds is refused before
any array is allocated."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .common import fail, file_size, read_bytes

MAX_HEADER_BYTES = 1 << 16
PLY_TYPES = {
    "char": "i1",
    "int8": "i1",
    "uchar": "u1",
    "uint8": "u1",
    "short": "<i2",
    "int16": "<i2",
    "ushort": "<u2",
    "uint16": "<u2",
    "int": "<i4",
    "int32": "<i4",
    "uint": "<u4",
    "uint32": "<u4",
    "float": "<f4",
    "float32": "<f4",
    "double": "<f8",
    "float64": "<f8",
}


@dataclass
class Element:
    name: str
    count: int
    properties: list[tuple[str, str]] = field(default_factory=list)  # (name, numpy dtype)
    has_list: bool = False

    @property
    def dtype(self) -> np.dtype:
        return np.dtype([(n, t) for n, t in self.properties])

    @property
    def names(self) -> list[str]:
        return [n for n, _ in self.properties]


@dataclass
class PlyHeader:
    format: str
    elements: list[Element]
    length: int  # bytes up to and including "end_header\n"

    def element(self, name: str) -> Element | None:
        return next((e for e in self.elements if e.name == name), None)


def is_ply(path: Path) -> bool:
    return read_bytes(path, 4) in (b"ply\n", b"ply\r")


def read_header(path: Path) -> PlyHeader:
    head = read_bytes(path, MAX_HEADER_BYTES)
    end = head.find(b"end_header")
    if not head.startswith(b"ply") or end < 0:
        raise fail(path, "not a PLY file (no 'ply' ... 'end_header' header)")
    stop = head.index(b"\n", end) + 1 if b"\n" in head[end:] else len(head)
    fmt, elements = "", []
    for raw in head[:end].decode("ascii", errors="replace").splitlines()[1:]:
        words = raw.split()
        if not words or words[0] in ("comment", "obj_info"):
            continue
        try:
            if words[0] == "format":
                fmt = words[1]
            elif words[0] == "element":
                elements.append(Element(words[1], int(words[2])))
            elif words[0] == "property" and words[1] == "list":
                elements[-1].has_list = True
            elif words[0] == "property":
                elements[-1].properties.append((words[2], PLY_TYPES[words[1]]))
            else:
                raise ValueError(raw)
        except (IndexError, KeyError, ValueError):
            raise fail(path, f"malformed PLY header line {raw.strip()!r}") from None
    if any(e.count < 0 for e in elements):
        raise fail(path, "negative element count in the PLY header")
    return PlyHeader(fmt, elements, stop)


def check_body_size(path: Path, header: PlyHeader) -> None:
    """A binary PLY without list properties must hold at least what its element counts declare
    (checked before any reader allocates from those counts)."""
    if header.format not in ("binary_little_endian", "binary_big_endian") or any(e.has_list for e in header.elements):
        return
    expected = header.length + sum(e.count * e.dtype.itemsize for e in header.elements)
    actual = file_size(path)
    if actual < expected:
        raise fail(path, f"truncated: the header declares {expected:,} bytes, the file has {actual:,}")


def read_binary_body(path: Path, header: PlyHeader) -> dict[str, np.ndarray]:
    """Every element's records, after checking the file holds what the header declares."""
    if header.format != "binary_little_endian":
        raise fail(path, f"expected a binary_little_endian PLY, got format {header.format or 'none'}")
    if any(e.has_list for e in header.elements):
        raise fail(path, "list properties are not supported in this PLY layout")
    check_body_size(path, header)
    out, offset = {}, header.length
    with open(path, "rb") as f:
        for e in header.elements:
            f.seek(offset)
            out[e.name] = np.fromfile(f, dtype=e.dtype, count=e.count)
            offset += e.count * e.dtype.itemsize
    return out
