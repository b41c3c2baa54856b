"""A strict reader (and a small writer) for the IDX format of MNIST and Fashion-MNIST.

IDX (LeCun et al., "Gradient-based learning applied to document recognition", 1998; file
format described at the MNIST web page): two zero bytes, one byte naming the element type,
one byte giving the number of dimensions d, then d big-endian uint32 sizes, then the
elements in C order, big-endian. Files may be gzip-compressed (recognised by the gzip magic
bytes, not by the name).

Every defect (not gzip though it looks like it, truncated stream, wrong magic, unknown
element type, a payload shorter or longer than the header promises) is a UsageError that
names the file, so a half-downloaded file is never read as data.
"""

from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path

import numpy as np

from genbench.errors import UsageError

# element-type byte -> numpy dtype (big-endian as stored)
IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
GZIP_MAGIC = b"\x1f\x8b"
MAX_NDIM = 8


def read_idx(path: Path) -> np.ndarray:
    """Decode one IDX file (plain or gzip) into a native-endian numpy array."""
    path = Path(path)
    blob = _read_maybe_gzip(path)
    dtype, dims, offset = _parse_idx_header(path, blob)
    expected = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    found = len(blob) - offset
    if found != expected:
        what = "truncated" if found < expected else "longer than its header says"
        raise _corrupt(path, f"{what}: header promises {expected} bytes of data for shape {tuple(dims)}, found {found}")
    data = np.frombuffer(blob, dtype=dtype, count=expected // dtype.itemsize, offset=offset)
    return data.reshape(dims).astype(dtype.newbyteorder("="), copy=False)


def write_idx(path: Path, array: np.ndarray, compress: bool | None = None) -> None:
    """Write ``array`` as IDX (gzip when ``compress`` or, by default, when the name ends in .gz)."""
    path = Path(path)
    array = np.ascontiguousarray(array)
    code = next((c for c, dt in IDX_DTYPES.items() if dt.newbyteorder("=") == array.dtype.newbyteorder("=")), None)
    if code is None:
        raise UsageError(f"dtype {array.dtype} has no IDX element type; use one of uint8, int8, int16, int32, float32, float64")
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    blob = header + array.astype(IDX_DTYPES[code], copy=False).tobytes()
    if compress if compress is not None else path.suffix == ".gz":
        blob = gzip.compress(blob, mtime=0)
    path.write_bytes(blob)


def _read_maybe_gzip(path: Path) -> bytes:
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise UsageError(f"cannot read {path} ({e.strerror or e}); check the path and its permissions") from None
    if not raw.startswith(GZIP_MAGIC):
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as e:
        raise _corrupt(path, f"the gzip stream is damaged ({e})") from None


def _parse_idx_header(path: Path, blob: bytes) -> tuple[np.dtype, list[int], int]:
    """(element dtype, dimension sizes, byte offset of the data)."""
    if len(blob) < 4 or blob[0] != 0 or blob[1] != 0:
        raise _corrupt(path, "it does not start with the IDX magic number (two zero bytes)")
    code, ndim = blob[2], blob[3]
    if code not in IDX_DTYPES:
        raise _corrupt(path, f"unknown IDX element type 0x{code:02x}")
    if not 1 <= ndim <= MAX_NDIM:
        raise _corrupt(path, f"implausible number of dimensions {ndim}")
    offset = 4 + 4 * ndim
    if len(blob) < offset:
        raise _corrupt(path, f"truncated inside the header ({len(blob)} bytes)")
    dims = list(struct.unpack(f">{ndim}I", blob[4:offset]))
    return IDX_DTYPES[code], dims, offset


def _corrupt(path: Path, why: str) -> UsageError:
    return UsageError(f"{path} is not a valid IDX file: {why}; delete it and download or copy it again")
