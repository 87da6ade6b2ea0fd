"""MATLAB level-5 MAT files: telling a truncated or damaged file from one that is no MAT file.

scipy's ``loadmat`` fails on a cut file with words that say neither ("could not read bytes",
"index out of range"). The element tags after the 128-byte header declare their byte counts,
so walking them says where a file ends too early.
"""

from __future__ import annotations

import struct
from pathlib import Path

from sakdn.data.problems import dataset_error
from sakdn.errors import DatasetError

HEADER = 128  # bytes: description text, subsystem offset, version, endian indicator
_MI_COMPRESSED = 15  # data type of a zlib-compressed element (not padded to 8 bytes)


def unreadable_mat(path: Path, err: Exception) -> DatasetError:
    """The error for a file ``scipy.io.loadmat`` failed on (``err``): a truncated or corrupt
    MAT file when it starts like one, else not a MAT file at all."""
    if not _starts_like_mat(path):
        return dataset_error(str(path), "unreadable_file",
                             f"not a readable MATLAB v5 file ({err})")
    return truncated_mat(path, mat_defect(path) or f"a data element cannot be read ({err})")


def truncated_mat(path: str | Path, defect: str) -> DatasetError:
    return dataset_error(str(path), "truncated_file", f"truncated or corrupt MAT file: {defect}")


def mat_defect(path: str | Path) -> str | None:
    """Where a MAT file is cut short (or its header damaged); None when every element is whole.

    Walks the element tags after the header: each declares its byte count, so a file that
    stops inside an element, or holds nothing after its header, is truncated.
    """
    raw = Path(path).read_bytes()
    if len(raw) < HEADER:
        return f"{len(raw)} bytes, shorter than the {HEADER}-byte MAT-file header"
    if len(raw) == HEADER:
        return f"nothing after the {HEADER}-byte header"
    if raw[126:128] not in (b"IM", b"MI"):
        return f"no endian indicator at bytes 126–127 of the header ({raw[126:128]!r})"
    order = "<" if raw[126:128] == b"IM" else ">"
    offset = HEADER
    while offset < len(raw):
        if len(raw) - offset < 8:
            return f"the file ends at byte {len(raw)}, inside the tag of the element at {offset}"
        kind, size = struct.unpack(order + "II", raw[offset:offset + 8])
        if kind >> 16:  # small data element: type and data packed into these 8 bytes
            offset += 8
            continue
        end = offset + 8 + size
        if end > len(raw):
            return (f"the file ends at byte {len(raw)}, inside the data element at byte "
                    f"{offset} that runs to byte {end}")
        offset = end if kind == _MI_COMPRESSED else end + (-size % 8)
    return None


def _starts_like_mat(path: Path) -> bool:
    """Whether the file starts with a MAT-file's header text, however short it is."""
    with open(path, "rb") as f:
        return f.read(6) == b"MATLAB"
