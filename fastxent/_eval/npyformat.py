"""The ``.npy`` format: reading and checking a header, and finding an uncompressed ``.npz``
member's bytes in its zip file.

Every problem raises :class:`EvalFileError` naming the file (`name`).
"""

import ast
import math
import struct
import sys

import numpy.lib.format as npy_format

from fastxent._eval.errors import EvalFileError

NPY_MAGIC = b"\x93NUMPY"
ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")
_ZIP_LOCAL_HEADER = struct.Struct("<4s22xHH")    # signature, ..., name length, extra length
_NPY_V3_HEADER_LENGTH = struct.Struct("<I")
_MAX_HEADER_BYTES = 10000                         # NumPy's limit for a header it parses
_MAX_DIMS = 64                                    # NumPy's NPY_MAXDIMS


def read_npy_header(fp, name):
    """Read a .npy header from `fp`: return (shape, fortran_order, dtype), all checked."""
    try:
        version = npy_format.read_magic(fp)
        if version == (1, 0):
            shape, fortran_order, dtype = npy_format.read_array_header_1_0(fp)
        elif version == (2, 0):
            shape, fortran_order, dtype = npy_format.read_array_header_2_0(fp)
        elif version == (3, 0):
            shape, fortran_order, dtype = _read_npy_header_3_0(fp)
        else:
            raise ValueError(f"unsupported .npy format version {version}")
    except (ValueError, EOFError, SyntaxError, TypeError, MemoryError, RecursionError,
            struct.error) as exc:
        raise EvalFileError(f"{name}: not a valid .npy file: {exc}") from None
    _check_header(name, shape, dtype)
    return shape, fortran_order, dtype


def _read_npy_header_3_0(fp):
    """The header of format 3.0: 2.0's layout with a UTF-8 text (NumPy has no public reader)."""
    length_bytes = fp.read(_NPY_V3_HEADER_LENGTH.size)
    if len(length_bytes) < _NPY_V3_HEADER_LENGTH.size:
        raise EOFError("the header length is cut off")
    (length,) = _NPY_V3_HEADER_LENGTH.unpack(length_bytes)
    if length > _MAX_HEADER_BYTES:
        raise ValueError(f"header of {length} bytes (at most {_MAX_HEADER_BYTES} are read)")
    text = fp.read(length)
    if len(text) < length:
        raise EOFError(f"the header is cut off ({len(text)} of {length} bytes)")
    header = ast.literal_eval(text.decode("utf-8"))
    if not isinstance(header, dict) or header.keys() != {"descr", "fortran_order", "shape"}:
        raise ValueError(f"the header is not a dict of descr, fortran_order and shape: "
                         f"{header!r}")
    if not isinstance(header["shape"], tuple):
        raise ValueError(f"shape is not valid: {header['shape']!r}")
    if not isinstance(header["fortran_order"], bool):
        raise ValueError(f"fortran_order is not a valid bool: {header['fortran_order']!r}")
    return header["shape"], header["fortran_order"], npy_format.descr_to_dtype(header["descr"])


def _check_header(name, shape, dtype):
    """Raise EvalFileError for a shape or dtype that no array has or that cannot be read."""
    def invalid(problem):
        return EvalFileError(f"{name}: not a valid .npy file: {problem}")

    if not all(type(d) is int for d in shape):
        raise invalid(f"shape {shape!r} holds something other than ints")
    if any(d < 0 for d in shape):
        raise invalid(f"shape {shape} has a negative dimension")
    if len(shape) > _MAX_DIMS:
        raise invalid(f"{len(shape)} dimensions (NumPy allows {_MAX_DIMS})")
    if dtype.itemsize == 0:
        raise invalid(f"dtype {dtype} has elements of 0 bytes")
    if math.prod(max(d, 1) for d in shape) * dtype.itemsize > sys.maxsize:
        raise invalid(f"shape {shape} of {dtype} is larger than any file can hold")
    if dtype.hasobject:
        raise EvalFileError(f"{name}: dtype {dtype} holds Python objects (pickled data), "
                            f"which cannot be read in chunks")
    if dtype.names is not None or dtype.subdtype is not None:
        raise EvalFileError(f"{name}: structured dtype {dtype} is not supported")


def check_length(name, shape, dtype, available):
    """Raise EvalFileError when fewer than the `available` bytes are left for the data the
    header describes."""
    expected = math.prod(shape) * dtype.itemsize
    if available < expected:
        raise EvalFileError(
            f"{name}: truncated: header says {shape} {dtype} = {expected} bytes of data, "
            f"file has {max(available, 0)}")


def stored_member_start(name, file, info):
    """The offset in `file` of the bytes of the uncompressed zip member `info` (its ``.npy``),
    read from the member's local header."""
    file.seek(info.header_offset)
    local = file.read(_ZIP_LOCAL_HEADER.size)
    if len(local) < _ZIP_LOCAL_HEADER.size:
        raise EvalFileError(f"{name}: truncated .npz file (the member's header is cut off)")
    signature, name_length, extra_length = _ZIP_LOCAL_HEADER.unpack(local)
    if signature != b"PK\x03\x04":
        raise EvalFileError(f"{name}: corrupt .npz file (bad local header)")
    return info.header_offset + _ZIP_LOCAL_HEADER.size + name_length + extra_length
