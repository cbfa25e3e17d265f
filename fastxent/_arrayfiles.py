"""Reading ``.npy`` files and ``.npz`` members row by row without loading them.

:func:`open_array` memory-maps ``.npy`` files and uncompressed ``.npz`` members (each chunk's
pages can be handed back to the operating system once processed) and streams compressed
members; :func:`read_array` loads a small array. Every problem with a file raises
:class:`EvalFileError`, a ``ValueError`` whose message names the file and the problem.
"""

import math
import mmap
import os
import struct
import zipfile
import zlib

import numpy as np
import numpy.lib.format as npy_format

_NPY_MAGIC = b"\x93NUMPY"
_ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")
_ZIP_LOCAL_HEADER = struct.Struct("<4s22xHH")    # signature, ..., name length, extra length
_SKIP_BYTES = 16 * 2**20                          # read size when skipping compressed rows


class EvalFileError(ValueError):
    """A problem with an input file or a checkpoint; the message names the file."""


def read_array(spec):
    """Load a small array (such as class weights) given as ``FILE.npy`` or ``FILE.npz[:NAME]``.

    Parameters
    ----------
    spec : str or os.PathLike
        The same syntax as :func:`evaluate_files` takes.

    Returns
    -------
    ndarray
        The whole array, in memory, in native byte order.
    """
    with open_array(spec) as source:
        source.row_elements = 1
        flat = source.read(0, math.prod(source.shape))
        if source.fortran_order:
            return flat.reshape(source.shape[::-1]).T.copy()
        return flat.reshape(source.shape).copy()


def parse_path(spec):
    """Split ``"FILE.npz:NAME"`` into ``(FILE.npz, NAME)``; other paths give ``(path, None)``.

    A path that exists as given is never split, so file names holding a colon still work.
    """
    spec = os.fspath(spec)
    if not os.path.exists(spec) and ":" in spec:
        base, member = spec.rsplit(":", 1)
        if base.lower().endswith(".npz") and member:
            return base, member
    return spec, None


def open_array(spec):
    """Open a ``.npy`` file or a ``.npz`` member for reading rows without loading it.

    Parameters
    ----------
    spec : str or os.PathLike
        ``FILE.npy``, ``FILE.npz`` (a single array) or ``FILE.npz:NAME``.

    Returns
    -------
    ArraySource
        Memory-mapped for ``.npy`` files and uncompressed ``.npz`` members (``np.savez``),
        streamed for compressed members (``np.savez_compressed``). Use as a context manager.
    """
    name = os.fspath(spec)
    path, member = parse_path(spec)
    try:
        with open(path, "rb") as fp:
            head = fp.read(6)
    except FileNotFoundError:
        raise FileNotFoundError(f"{name}: no such file") from None
    except IsADirectoryError:
        raise EvalFileError(f"{name}: is a directory, not a .npy or .npz file") from None
    if head.startswith(_NPY_MAGIC):
        if member is not None:
            raise EvalFileError(f"{name}: {path} is a .npy file; ':NAME' selects a member of "
                                f"a .npz file")
        return _open_npy(name, path)
    if head[:4] in _ZIP_MAGICS:
        return _open_npz_member(name, path, member)
    if not head:
        raise EvalFileError(f"{name}: empty file, not a .npy or .npz file")
    raise EvalFileError(f"{name}: not a .npy or .npz file (it starts with {head!r})")


def _read_npy_header(fp, name):
    """Read a .npy header from `fp`: return (shape, fortran_order, dtype)."""
    try:
        version = npy_format.read_magic(fp)
        if version == (1, 0):
            shape, fortran_order, dtype = npy_format.read_array_header_1_0(fp)
        elif version == (2, 0):
            shape, fortran_order, dtype = npy_format.read_array_header_2_0(fp)
        elif version == (3, 0) and hasattr(npy_format, "_read_array_header"):
            shape, fortran_order, dtype = npy_format._read_array_header(fp, version)
        else:
            raise ValueError(f"unsupported .npy format version {version}")
    except (ValueError, EOFError, SyntaxError, struct.error) as exc:
        raise EvalFileError(f"{name}: not a valid .npy file: {exc}") from None
    if dtype.hasobject:
        raise EvalFileError(f"{name}: dtype {dtype} holds Python objects (pickled data), "
                            f"which cannot be read in chunks")
    if dtype.names is not None or dtype.subdtype is not None:
        raise EvalFileError(f"{name}: structured dtype {dtype} is not supported")
    return tuple(int(d) for d in shape), bool(fortran_order), dtype


def _check_length(name, shape, dtype, available):
    expected = math.prod(shape) * dtype.itemsize
    if available < expected:
        raise EvalFileError(
            f"{name}: truncated: header says {shape} {dtype} = {expected} bytes of data, "
            f"file has {max(available, 0)}")


def _open_npy(name, path):
    with open(path, "rb") as fp:
        shape, fortran_order, dtype = _read_npy_header(fp, name)
        offset = fp.tell()
        stat = os.fstat(fp.fileno())
    _check_length(name, shape, dtype, stat.st_size - offset)
    return _MappedArray(name, path, None, stat, shape, fortran_order, dtype, offset)


def _open_npz_member(name, path, member):
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise EvalFileError(f"{name}: not a valid .npz (zip) file, or truncated: "
                            f"{exc}") from None
    with archive:
        infos = [info for info in archive.infolist() if not info.is_dir()]
        names = [info.filename for info in infos]
        shown = ", ".join(n[:-4] if n.endswith(".npy") else n for n in names) or "nothing"
        if member is None:
            if len(infos) != 1:
                raise EvalFileError(f"{name}: holds {len(infos)} arrays ({shown}); choose one "
                                    f"with {path}:NAME")
            info = infos[0]
        else:
            matches = [info for info in infos if info.filename in (member, member + ".npy")]
            if not matches:
                raise EvalFileError(f"{name}: {path} has no array {member!r} (it holds "
                                    f"{shown})")
            info = matches[0]
        if info.flag_bits & 0x1:
            raise EvalFileError(f"{name}: the member is encrypted")
        stat = os.stat(path)
        if info.compress_type == zipfile.ZIP_STORED:
            return _open_stored_member(name, path, info, stat)
        try:
            return _StreamedArray(name, path, info, stat)
        except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError,
                RuntimeError) as exc:
            raise EvalFileError(f"{name}: cannot read the compressed member: {exc}") from None


def _open_stored_member(name, path, info, stat):
    """Locate an uncompressed member's bytes in the zip file, to map them like a .npy."""
    with open(path, "rb") as fp:
        fp.seek(info.header_offset)
        local = fp.read(_ZIP_LOCAL_HEADER.size)
        if len(local) < _ZIP_LOCAL_HEADER.size:
            raise EvalFileError(f"{name}: truncated .npz file (the member's header is cut off)")
        signature, name_length, extra_length = _ZIP_LOCAL_HEADER.unpack(local)
        if signature != b"PK\x03\x04":
            raise EvalFileError(f"{name}: corrupt .npz file (bad local header)")
        member_start = info.header_offset + _ZIP_LOCAL_HEADER.size + name_length + extra_length
        fp.seek(member_start)
        shape, fortran_order, dtype = _read_npy_header(fp, name)
        offset = fp.tell()
    member_end = min(member_start + info.file_size, stat.st_size)
    _check_length(name, shape, dtype, member_end - offset)
    return _MappedArray(name, path, info.filename, stat, shape, fortran_order, dtype, offset)


class ArraySource:
    """An array in a file, read a range of rows at a time.

    Attributes
    ----------
    name : str
        The path as the caller gave it (used in messages).
    shape, dtype, fortran_order
        From the ``.npy`` header.
    row_elements : int
        Elements per row (set by the caller: C for logits and soft targets, 1 for labels).
    """

    def __init__(self, name, path, member, stat, shape, fortran_order, dtype):
        self.name = name
        self.path = os.path.realpath(path)
        self.member = member
        self.shape = shape
        self.fortran_order = fortran_order
        self.dtype = dtype
        self.row_elements = 1
        self._stat = stat

    def identity(self):
        """What a checkpoint records to recognise this input."""
        return {"path": self.path, "member": self.member, "size": self._stat.st_size,
                "mtime_ns": self._stat.st_mtime_ns, "shape": list(self.shape),
                "dtype": self.dtype.str}

    def _native(self, arr):
        """Return `arr` in native byte order and aligned (copying only when needed)."""
        if not self.dtype.isnative:
            return arr.astype(self.dtype.newbyteorder("="))
        if not arr.flags.aligned:
            return arr.copy()
        return arr

    def read(self, start, stop):
        """Return the elements of rows [start, stop) as a 1-D array."""
        raise NotImplementedError

    def release(self, start, stop):
        """Tell the source that rows [start, stop) will not be read again."""

    def close(self):
        """Release the file."""

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()


class _MappedArray(ArraySource):
    """A .npy file or an uncompressed .npz member, memory-mapped read-only."""

    def __init__(self, name, path, member, stat, shape, fortran_order, dtype, offset):
        super().__init__(name, path, member, stat, shape, fortran_order, dtype)
        self._offset = offset
        self._file = open(path, "rb")
        try:
            self._map = mmap.mmap(self._file.fileno(), 0, access=mmap.ACCESS_READ)
        except (OSError, ValueError) as exc:
            self._file.close()
            raise EvalFileError(f"{name}: cannot memory-map the file: {exc}") from None
        if hasattr(self._map, "madvise") and hasattr(mmap, "MADV_SEQUENTIAL"):
            self._map.madvise(mmap.MADV_SEQUENTIAL)

    def read(self, start, stop):
        step = self.row_elements
        arr = np.frombuffer(self._map, dtype=self.dtype, count=(stop - start) * step,
                            offset=self._offset + start * step * self.dtype.itemsize)
        return self._native(arr)

    def release(self, start, stop):
        """Drop the pages of rows [start, stop) from this process (they stay in the cache)."""
        if not hasattr(mmap, "MADV_DONTNEED"):
            return
        row_bytes = self.row_elements * self.dtype.itemsize
        first = (self._offset + start * row_bytes) // mmap.PAGESIZE * mmap.PAGESIZE
        last = min(self._offset + stop * row_bytes, len(self._map))
        if last > first:
            self._map.madvise(mmap.MADV_DONTNEED, first, last - first)

    def close(self):
        try:
            self._map.close()
        except BufferError:      # an array still views the map; it closes when collected
            pass
        self._file.close()


class _StreamedArray(ArraySource):
    """A compressed .npz member, decompressed sequentially (seeking back re-reads from 0)."""

    def __init__(self, name, path, info, stat):
        self._archive = zipfile.ZipFile(path)
        self._info = info
        self._member_name = name
        try:
            self._stream, shape, fortran_order, dtype = self._open_stream()
        except BaseException:
            self._archive.close()
            raise
        super().__init__(name, path, info.filename, stat, shape, fortran_order, dtype)
        _check_length(name, shape, dtype, info.file_size - self._header_bytes)
        self._row = 0

    def _open_stream(self):
        stream = self._archive.open(self._info)
        shape, fortran_order, dtype = _read_npy_header(stream, self._member_name)
        self._header_bytes = stream.tell()
        return stream, shape, fortran_order, dtype

    def _read_exactly(self, nbytes, start):
        parts, missing = [], nbytes
        try:
            while missing:
                part = self._stream.read(min(missing, 1 << 30))
                if not part:
                    break
                parts.append(part)
                missing -= len(part)
        except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as exc:
            raise EvalFileError(f"{self.name}: corrupt compressed data near row {start}: "
                                f"{exc}") from None
        if missing:
            raise EvalFileError(f"{self.name}: truncated compressed data at row {start}")
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def read(self, start, stop):
        row_bytes = self.row_elements * self.dtype.itemsize
        if start < self._row:
            self._stream.close()
            self._stream = self._open_stream()[0]
            self._row = 0
        while self._row < start:
            rows = min(start - self._row, max(1, _SKIP_BYTES // max(row_bytes, 1)))
            self._read_exactly(rows * row_bytes, self._row)
            self._row += rows
        data = self._read_exactly((stop - start) * row_bytes, start)
        self._row = stop
        return self._native(np.frombuffer(data, dtype=self.dtype))

    def close(self):
        self._stream.close()
        self._archive.close()
