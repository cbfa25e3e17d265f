"""Reading ``.npy`` files and ``.npz`` members row by row without loading them.

:func:`open_array` opens a regular file (FIFOs, devices, sockets and directories are refused
before anything is read from them) and returns an :class:`ArraySource`. ``.npy`` files and
uncompressed ``.npz`` members are read with positional reads (``os.preadv``) into one reused,
aligned buffer per source: the memory stays near one chunk, and a file cut short while it is
read gives a short read, never the ``SIGBUS`` of a memory map. The CRC-32 of an uncompressed
member is computed as its bytes are read and checked by :meth:`ArraySource.verify`;
compressed members are decompressed sequentially and checked by :mod:`zipfile`.
:func:`read_array` and :func:`whole_array` load a whole array. Every problem with a file raises
:class:`EvalFileError`, a ``ValueError`` whose message names the file and the problem.
"""

import contextlib
import hashlib
import math
import os
import stat as stat_module
import zipfile
import zlib

import numpy as np

from fastxent._eval.errors import EvalFileError
from fastxent._eval.npyformat import (
    NPY_MAGIC,
    ZIP_MAGICS,
    check_length,
    read_npy_header,
    stored_member_start,
)

_SKIP_BYTES = 16 * 2**20                          # read size for rows read only to check them
_BUFFER_ALIGN = 64                                # bytes; a cache line, and any SIMD vector
_FINGERPRINT_EDGE = 64 * 2**10                    # bytes hashed at each end of a file
_FINGERPRINT_PAGES = 16                           # pages sampled in between
_PAGE = 4096

_NOT_REGULAR = [(stat_module.S_ISDIR, "is a directory"),
                (stat_module.S_ISFIFO, "is a FIFO (named pipe)"),
                (stat_module.S_ISCHR, "is a character device"),
                (stat_module.S_ISBLK, "is a block device"),
                (stat_module.S_ISSOCK, "is a socket")]


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
        return whole_array(source)


def whole_array(source):
    """Read every element of an open :class:`ArraySource` (a linear layer's weight, class
    weights), check its checksum, and return it as a new C-contiguous array in native byte
    order.

    Parameters
    ----------
    source : ArraySource
        Not read yet.

    Returns
    -------
    ndarray
    """
    source.row_elements = 1
    flat = source.read(0, math.prod(source.shape))
    if source.fortran_order:
        array = flat.reshape(source.shape[::-1]).T.copy()
    else:
        array = flat.reshape(source.shape).copy()
    source.verify()                  # after the copy: it may reuse the buffer of `flat`
    return array


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


def fingerprint_regions(size):
    """The ``(offset, length)`` byte ranges of a `size`-byte file that its fingerprint hashes.

    The first and last 64 KiB (the ``.npy`` header; a ``.npz`` file's central directory, which
    holds every member's CRC-32) and 16 pages of 4 KiB spread evenly in between.
    """
    regions = [(0, min(size, _FINGERPRINT_EDGE)),
               (max(size - _FINGERPRINT_EDGE, 0), min(size, _FINGERPRINT_EDGE))]
    for i in range(_FINGERPRINT_PAGES):
        offset = size * (2 * i + 1) // (2 * _FINGERPRINT_PAGES) // _PAGE * _PAGE
        regions.append((offset, min(_PAGE, size - offset)))
    return regions


def open_array(spec):
    """Open a ``.npy`` file or a ``.npz`` member for reading rows without loading it.

    Parameters
    ----------
    spec : str or os.PathLike
        ``FILE.npy``, ``FILE.npz`` (a single array) or ``FILE.npz:NAME``.

    Returns
    -------
    ArraySource
        Read in place for ``.npy`` files and uncompressed ``.npz`` members (``np.savez``),
        streamed for compressed members (``np.savez_compressed``). Use as a context manager.

    Raises
    ------
    EvalFileError
        The path is not a regular file, or not a valid ``.npy``/``.npz`` (header, shape, dtype,
        length, member).
    FileNotFoundError
        The file does not exist.
    """
    name = os.fspath(spec)
    path, member = parse_path(spec)
    file, stat = _open_regular_file(name, path)
    try:
        if hasattr(os, "posix_fadvise"):        # a hint (larger read-ahead); never needed
            with contextlib.suppress(OSError):
                os.posix_fadvise(file.fileno(), 0, 0, os.POSIX_FADV_SEQUENTIAL)
        head = file.read(6)
        if head.startswith(NPY_MAGIC):
            if member is not None:
                raise EvalFileError(f"{name}: {path} is a .npy file; ':NAME' selects a member "
                                    f"of a .npz file")
            return _open_npy(name, path, file, stat)
        if head[:4] in ZIP_MAGICS:
            return _open_npz_member(name, path, file, stat, member)
        if not head:
            raise EvalFileError(f"{name}: empty file, not a .npy or .npz file")
        raise EvalFileError(f"{name}: not a .npy or .npz file (it starts with {head!r})")
    except BaseException:
        file.close()
        raise


def _open_regular_file(name, path):
    """Open `path` for reading if it is a regular file; return (binary file, os.stat_result).

    The type is checked before opening (opening a FIFO for reading waits for a writer) and
    again on the open descriptor, which is opened non-blocking in case a FIFO replaced the file
    in between (``O_NONBLOCK`` changes nothing when reading a regular file).
    """
    try:
        _check_regular(name, os.stat(path))
    except FileNotFoundError:
        raise FileNotFoundError(f"{name}: no such file") from None
    flags = (os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
             | getattr(os, "O_BINARY", 0))
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise FileNotFoundError(f"{name}: no such file") from None
    file = os.fdopen(fd, "rb")
    try:
        stat = os.fstat(fd)
        _check_regular(name, stat)
    except BaseException:
        file.close()
        raise
    return file, stat


def _check_regular(name, stat):
    if stat_module.S_ISREG(stat.st_mode):
        return
    what = next((what for test, what in _NOT_REGULAR if test(stat.st_mode)),
                "is not a regular file")
    raise EvalFileError(f"{name}: {what}, not a .npy or .npz file (inputs must be regular "
                        f"files)")


def _open_npy(name, path, file, stat):
    file.seek(0)
    shape, fortran_order, dtype = read_npy_header(file, name)
    offset = file.tell()
    check_length(name, shape, dtype, stat.st_size - offset)
    return _InPlaceArray(name, path, file, stat, None, shape, fortran_order, dtype, offset)


def _open_npz_member(name, path, file, stat, member):
    try:
        archive = zipfile.ZipFile(file)
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise EvalFileError(f"{name}: not a valid .npz (zip) file, or truncated: "
                            f"{exc}") from None
    try:
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
        if info.compress_type == zipfile.ZIP_STORED:
            archive.close()
            return _open_stored_member(name, path, file, stat, info)
        try:
            return _StreamedArray(name, path, file, stat, archive, info)
        except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError,
                RuntimeError) as exc:
            raise EvalFileError(f"{name}: cannot read the compressed member: {exc}") from None
    except BaseException:
        archive.close()
        raise


def _open_stored_member(name, path, file, stat, info):
    """Locate an uncompressed member's bytes in the zip file, to read them like a .npy."""
    if info.compress_size != info.file_size:
        raise EvalFileError(f"{name}: corrupt .npz file (an uncompressed member of "
                            f"{info.file_size} bytes takes {info.compress_size})")
    member_start = stored_member_start(name, file, info)
    file.seek(member_start)
    shape, fortran_order, dtype = read_npy_header(file, name)
    offset = file.tell()
    member_end = member_start + info.file_size
    check_length(name, shape, dtype, min(member_end, stat.st_size) - offset)
    return _InPlaceArray(name, path, file, stat, info.filename, shape, fortran_order, dtype,
                         offset, crc=(member_start, member_end, info.CRC))


def _read_into(file, view, position):
    """Read into `view` from byte `position` of `file`; return the count (0 at the end)."""
    if hasattr(os, "preadv"):
        return os.preadv(file.fileno(), [view], position)
    file.seek(position)
    return file.readinto(view)


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

    def __init__(self, name, path, file, stat, member, shape, fortran_order, dtype):
        self.name = name
        self.path = os.path.realpath(path)
        self.member = member
        self.shape = shape
        self.fortran_order = fortran_order
        self.dtype = dtype
        self.row_elements = 1
        self._file = file
        self._stat = stat
        self._fingerprint = None

    def identity(self):
        """What a checkpoint records to recognise this input.

        ``fingerprint`` is a BLAKE2b hash of the size and of the byte ranges
        :func:`fingerprint_regions` names, read when first asked for: a rewrite that keeps the
        size and the modification time but changes any of those bytes changes it.
        """
        if self._fingerprint is None:
            digest = hashlib.blake2b(self._stat.st_size.to_bytes(8, "little"), digest_size=16)
            for offset, length in fingerprint_regions(self._stat.st_size):
                digest.update(self._read_bytes(offset, length))
            self._fingerprint = digest.hexdigest()
        return {"path": self.path, "member": self.member, "size": self._stat.st_size,
                "mtime_ns": self._stat.st_mtime_ns, "shape": list(self.shape),
                "dtype": self.dtype.str, "fingerprint": self._fingerprint}

    def _read_bytes(self, offset, length):
        """Up to `length` bytes of the file from `offset` (fewer if it ends first)."""
        data = bytearray(length)
        return bytes(data[:self._fill(memoryview(data), offset)])

    def _fill(self, view, position):
        """Read the file from `position` into `view` until it is full or the file ends.

        Returns the number of bytes read; an OSError becomes EvalFileError.
        """
        done = 0
        try:
            while done < len(view):
                count = _read_into(self._file, view[done:], position + done)
                if count == 0:
                    break
                done += count
        except OSError as exc:
            raise EvalFileError(f"{self.name}: cannot read the file: {exc}") from None
        return done

    def _shrunk(self):
        """The message for a file that got shorter since it was opened, or None."""
        try:
            size = os.fstat(self._file.fileno()).st_size
        except OSError:
            return None
        if size >= self._stat.st_size:
            return None
        return (f"{self.name}: truncated while being read: the file is now {size} bytes, it "
                f"was {self._stat.st_size} when opened")

    def read(self, start, stop):
        """Return the elements of rows [start, stop) as a 1-D array in native byte order.

        The array may be a view of a buffer that the next ``read`` or ``verify`` overwrites.
        """
        raise NotImplementedError

    def verify(self):
        """Check the checksum the file format holds (a ``.npz`` member's CRC-32).

        Call once every row has been read; the bytes not read yet are read now.
        """

    def close(self):
        """Release the file."""
        self._file.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()


class _InPlaceArray(ArraySource):
    """A .npy file or an uncompressed .npz member, read at its offsets into a reused buffer.

    For a member, ``crc=(start, end, expected)`` gives its bytes' range in the file and their
    CRC-32: the CRC runs over the bytes as the rows are read in order (rows skipped, as when a
    run resumes, are read for it), and :meth:`verify` compares it.
    """

    def __init__(self, name, path, file, stat, member, shape, fortran_order, dtype, offset,
                 crc=None):
        super().__init__(name, path, file, stat, member, shape, fortran_order, dtype)
        self._offset = offset
        self._buffer = np.empty(0, np.uint8)
        self._crc_range = crc
        self._crc = 0
        self._crc_position = None if crc is None else crc[0]

    def _read_range(self, position, nbytes):
        """Bytes [position, position + nbytes) of the file, in the reused buffer (uint8)."""
        if self._buffer.nbytes < nbytes:
            self._buffer = np.empty(0, np.uint8)      # free the old buffer first
            raw = np.empty(nbytes + _BUFFER_ALIGN, np.uint8)
            skip = -raw.ctypes.data % _BUFFER_ALIGN
            self._buffer = raw[skip:skip + nbytes]
        data = self._buffer[:nbytes]
        done = self._fill(memoryview(data), position)
        if done < nbytes:
            raise EvalFileError(self._shrunk() or (
                f"{self.name}: truncated: the file ends at byte {position + done}, before "
                f"byte {position + nbytes}"))
        return data

    def _checksum_until(self, position):
        """Extend the CRC over the bytes up to `position`, reading them for it."""
        while self._crc_position < position:
            nbytes = min(position - self._crc_position, _SKIP_BYTES)
            data = self._read_range(self._crc_position, nbytes)
            self._crc = zlib.crc32(data, self._crc)
            self._crc_position += nbytes

    def read(self, start, stop):
        row_bytes = self.row_elements * self.dtype.itemsize
        first = self._offset + start * row_bytes
        nbytes = (stop - start) * row_bytes
        if self._crc_range is not None and self._crc_position < first:
            self._checksum_until(first)
        data = self._read_range(first, nbytes)
        if self._crc_range is not None and first <= self._crc_position < first + nbytes:
            self._crc = zlib.crc32(data[self._crc_position - first:], self._crc)
            self._crc_position = first + nbytes
        arr = data.view(self.dtype)
        if not self.dtype.isnative:
            arr = arr.byteswap(inplace=True).view(self.dtype.newbyteorder("="))
        return arr

    def verify(self):
        if self._crc_range is None:
            return
        _, end, expected = self._crc_range
        self._checksum_until(end)
        if self._crc != expected:
            raise EvalFileError(
                f"{self.name}: corrupt .npz member: its CRC-32 is {self._crc:08x}, the zip "
                f"file says {expected:08x} (the data changed after it was written)")


class _StreamedArray(ArraySource):
    """A compressed .npz member, decompressed sequentially (seeking back re-reads from 0)."""

    def __init__(self, name, path, file, stat, archive, info):
        self._archive = archive
        self._info = info
        self._member_name = name
        self._stream, shape, fortran_order, dtype = self._open_stream()
        try:
            check_length(name, shape, dtype, info.file_size - self._header_bytes)
        except BaseException:
            self._stream.close()
            raise
        super().__init__(name, path, file, stat, info.filename, shape, fortran_order, dtype)
        self._row = 0

    def _open_stream(self):
        stream = self._archive.open(self._info)
        try:
            shape, fortran_order, dtype = read_npy_header(stream, self._member_name)
        except BaseException:
            stream.close()
            raise
        self._header_bytes = stream.tell()
        return stream, shape, fortran_order, dtype

    def _read_stream(self, nbytes, start):
        """Up to `nbytes` decompressed bytes (fewer only at the end of the member)."""
        parts, missing = [], nbytes
        try:
            while missing:
                part = self._stream.read(min(missing, 1 << 30))
                if not part:
                    break
                parts.append(part)
                missing -= len(part)
        except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as exc:
            raise EvalFileError(self._shrunk() or f"{self.name}: corrupt compressed data near "
                                f"row {start}: {exc}") from None
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def _read_exactly(self, nbytes, start):
        data = self._read_stream(nbytes, start)
        if len(data) < nbytes:
            raise EvalFileError(f"{self.name}: truncated compressed data at row {start}")
        return data

    def _skip_to(self, row):
        row_bytes = self.row_elements * self.dtype.itemsize
        while self._row < row:
            rows = min(row - self._row, max(1, _SKIP_BYTES // max(row_bytes, 1)))
            self._read_exactly(rows * row_bytes, self._row)
            self._row += rows

    def read(self, start, stop):
        if start < self._row:
            self._stream.close()
            self._stream = self._open_stream()[0]
            self._row = 0
        self._skip_to(start)
        data = self._read_exactly((stop - start) * self.row_elements * self.dtype.itemsize,
                                  start)
        self._row = stop
        arr = np.frombuffer(data, dtype=self.dtype)
        return arr if self.dtype.isnative else arr.astype(self.dtype.newbyteorder("="))

    def verify(self):
        """Read to the end of the member: :mod:`zipfile` checks the CRC-32 there."""
        rows = math.prod(self.shape) // max(self.row_elements, 1)
        self._skip_to(rows)
        while self._read_stream(_SKIP_BYTES, rows):
            pass

    def close(self):
        self._stream.close()
        self._archive.close()
        super().close()
