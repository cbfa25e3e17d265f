"""The file-reading layer of ``evaluate_files`` / ``fastxent eval`` against damaged, changing
and unusual inputs: nonsense headers, bit flips in ``.npz`` members, rewrites under a
checkpoint, files cut short while they are read, and paths that are not regular files."""

import hashlib
import io
import json
import os
import socket
import subprocess
import sys
import zipfile
import zlib

import numpy as np
import pytest

import fastxent
from fastxent import EvalFileError, cli, evaluate_files
from fastxent._eval import arrayfiles as _arrayfiles
from helpers import StopRun, stop_after, write_eval_files

N, C = 1000, 10


@pytest.fixture
def data(tmp_path, monkeypatch):
    return write_eval_files(tmp_path, monkeypatch, N, C)


def npy_bytes(header, version=(1, 0), payload=b""):
    """A .npy file whose header dict is the text `header` (any text: it may be nonsense)."""
    text = header.encode("utf-8" if version == (3, 0) else "latin1")
    length_format = "<H" if version == (1, 0) else "<I"
    prefix = len(np.lib.format.MAGIC_PREFIX) + 2 + np.dtype(length_format).itemsize
    padding = -(prefix + len(text) + 1) % 64
    length = len(text) + padding + 1
    return (np.lib.format.magic(*version) + np.array(length, length_format).tobytes() + text
            + b" " * padding + b"\n" + payload)


def npy_of(array, version=None):
    """The bytes np.save writes for `array` (with the given format version)."""
    out = io.BytesIO()
    np.lib.format.write_array(out, array, version=version)
    return out.getvalue()


def write_npz(path, members, compression=zipfile.ZIP_STORED):
    """A .npz holding `members` ({name: .npy bytes}), written as np.savez would."""
    with zipfile.ZipFile(path, "w", compression) as archive:
        for name, content in members.items():
            archive.writestr(f"{name}.npy", content)


def same(a, b):
    """Bitwise-equal results (NaN equals NaN): their dicts as JSON text."""
    return json.dumps(a.to_dict()) == json.dumps(b.to_dict())


def eval_cli(capsys, *argv):
    status = cli.main(["eval", *argv, "--no-progress"])
    out, err = capsys.readouterr()
    return status, out, err


# --------------------------------------------------------------------------------------------
# Item 4: nonsense .npy headers are rejected, in .npy files and in both kinds of .npz member


NONSENSE_HEADERS = [
    ("(-1, 10)", "shape (-1, 10) has a negative dimension"),
    ("(1000, -10)", "shape (1000, -10) has a negative dimension"),
    ("(True, 10)", "shape (True, 10) holds something other than ints"),
    ("(1000, 10.0)", "shape is not valid: (1000, 10.0)"),        # NumPy's own reader says so
    (f"({2**62}, {2**62})", f"shape ({2**62}, {2**62}) of float32 is larger than any file can "
                            f"hold"),
    (f"({2**63}, 0)", f"shape ({2**63}, 0) of float32 is larger than any file can hold"),
    (str((1,) * 65), "65 dimensions (NumPy allows 64)"),
]


@pytest.mark.parametrize("container", ["npy", "stored", "compressed"])
@pytest.mark.parametrize("shape, problem", NONSENSE_HEADERS, ids=[h[0][:12] for h in
                                                                    NONSENSE_HEADERS])
def test_nonsense_header_is_rejected(data, container, shape, problem):
    content = npy_bytes(f"{{'descr': '<f4', 'fortran_order': False, 'shape': {shape}, }}")
    if container == "npy":
        spec = "bad.npy"
        with open(spec, "wb") as fp:
            fp.write(content)
    else:
        spec = "bad.npz:logits"
        write_npz("bad.npz", {"logits": content},
                  zipfile.ZIP_STORED if container == "stored" else zipfile.ZIP_DEFLATED)
    with pytest.raises(EvalFileError) as info:
        evaluate_files(spec, "labels.npy")
    assert str(info.value) == f"{spec}: not a valid .npy file: {problem}"


def test_negative_dimension_fails_the_command(data, capsys):
    with open("negative.npy", "wb") as fp:
        fp.write(npy_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': (-5, 10), }"))
    np.save("none.npy", np.zeros(0, np.int64))
    status, out, err = eval_cli(capsys, "negative.npy", "none.npy", "--json")
    assert (status, out) == (2, "")
    assert err == ("fastxent eval: error: negative.npy: not a valid .npy file: shape (-5, 10) "
                   "has a negative dimension\n")


@pytest.mark.parametrize("header, problem", [
    ("{'descr': 'V0', 'fortran_order': False, 'shape': (3,), }",
     "dtype |V0 has elements of 0 bytes"),
    ("{'descr': '<f4', 'fortran_order': 0, 'shape': (3,), }",
     "fortran_order is not a valid bool: 0"),
    ("{'descr': '<f4', 'shape': (3,), }", "the header is not a dict of descr, fortran_order"),
    ("[1, 2]", "the header is not a dict of descr, fortran_order and shape: [1, 2]"),
    ("{'descr': '<f4', 'fortran_order': False, 'shape': [3], }", "shape is not valid: [3]"),
    ("__import__('os')", "malformed node or string"),
])
def test_nonsense_version_3_header_is_rejected(data, header, problem):
    with open("v3.npy", "wb") as fp:
        fp.write(npy_bytes(header, version=(3, 0)))
    with pytest.raises(EvalFileError) as info:
        evaluate_files("v3.npy", "labels.npy")
    assert str(info.value).startswith("v3.npy: not a valid .npy file: ")
    assert problem in str(info.value)


@pytest.mark.parametrize("version", [(1, 0), (2, 0), (3, 0)])
def test_every_npy_format_version_is_read(data, version):
    x, y = data
    with open("logits_v.npy", "wb") as fp:
        fp.write(npy_of(x, version))
    assert open("logits_v.npy", "rb").read(8)[6:] == bytes(version)
    got = evaluate_files("logits_v.npy", "labels.npy", topk=(1, 3))
    assert same(got, fastxent.evaluate(x, y, topk=(1, 3)))


def _member_span(path, member):
    """(start, end) of a stored member's bytes in the zip file, and its recorded CRC-32."""
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo(f"{member}.npy")
        content = archive.read(info)
    whole = open(path, "rb").read()
    start = whole.index(content, info.header_offset)
    return start, start + len(content), info.CRC


def _flip_bit(path, position, bit=0):
    """Flip one bit in place, keeping the size and the modification time."""
    before = os.stat(path)
    with open(path, "r+b") as fp:
        fp.seek(position)
        byte = fp.read(1)[0]
        fp.seek(position)
        fp.write(bytes([byte ^ (1 << bit)]))
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = os.stat(path)
    assert (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns)


def _crc_message(spec, path, span):
    """The error for a stored member at `span` (from _member_span before the damage)."""
    start, end, recorded = span
    computed = zlib.crc32(open(path, "rb").read()[start:end])
    assert computed != recorded
    return (f"{spec}: corrupt .npz member: its CRC-32 is {computed:08x}, the zip file says "
            f"{recorded:08x} (the data changed after it was written)")


@pytest.mark.parametrize("member, position", [
    ("logits", 600 * C * 4),              # a float's lowest mantissa bit, mid-file
    ("logits", N * C * 4 - 4),            # in the last row
    ("labels", 999 * 8),                  # bit 0 of a label in [0, 10): still in range
])
def test_bit_flip_in_an_uncompressed_member(data, member, position):
    x, y = data
    np.savez("both.npz", logits=x, labels=y)
    span = _member_span("both.npz", member)
    _flip_bit("both.npz", span[1] - (x if member == "logits" else y).nbytes + position)
    expected = _crc_message(f"both.npz:{member}", "both.npz", span)
    with pytest.raises(EvalFileError) as info:
        evaluate_files("both.npz:logits", "both.npz:labels", chunk_rows=128)
    assert str(info.value) == expected


def test_bit_flip_in_an_uncompressed_weight_member(tmp_path):
    np.savez(tmp_path / "w.npz", weights=np.linspace(0.5, 2.0, C))
    _, end, _ = _member_span(tmp_path / "w.npz", "weights")
    _flip_bit(tmp_path / "w.npz", end - 3)
    with pytest.raises(EvalFileError, match="w.npz:weights: corrupt .npz member: its CRC-32"):
        _arrayfiles.read_array(str(tmp_path / "w.npz:weights"))


def test_crc_covers_bytes_after_the_data_of_a_member(tmp_path):
    """A member may hold bytes after its array; the CRC covers them and the array is intact."""
    w = np.linspace(0.5, 2.0, 4 * 2**20 // 8)            # 4 MiB: the tail is read separately
    write_npz(tmp_path / "w.npz", {"weights": npy_of(w) + b"tail" * 1000})
    np.testing.assert_array_equal(_arrayfiles.read_array(str(tmp_path / "w.npz:weights")), w)
    span = _member_span(tmp_path / "w.npz", "weights")
    _flip_bit(tmp_path / "w.npz", span[1] - 3)            # in the tail, after the array
    with pytest.raises(EvalFileError) as info:
        _arrayfiles.read_array(str(tmp_path / "w.npz:weights"))
    assert str(info.value) == _crc_message(str(tmp_path / "w.npz:weights"),
                                           tmp_path / "w.npz", span)


def test_wrong_crc_of_a_compressed_member_is_caught_even_when_empty(data):
    for rows in (N, 0):
        np.savez_compressed("packed.npz", logits=np.zeros((rows, C), np.float32))
        whole = bytearray(open("packed.npz", "rb").read())
        with zipfile.ZipFile("packed.npz") as archive:
            crc = archive.getinfo("logits.npy").CRC.to_bytes(4, "little")
        assert whole.count(crc) == 2                  # the local header and central directory
        open("packed.npz", "wb").write(bytes(whole).replace(crc, bytes(b ^ 1 for b in crc)))
        np.save("none.npy", np.zeros(rows, np.int64))
        # zipfile checks it once it has decompressed the whole member: when the header is
        # read, when the last row is, or when the data's end is reached after the last row.
        with pytest.raises(EvalFileError, match=r"^packed.npz:logits: .*Bad CRC-32 for file "
                                                r"'logits.npy'"):
            evaluate_files("packed.npz:logits", "none.npy")


def test_big_endian_uncompressed_member_is_checked_before_the_byte_swap(data):
    x, y = data
    np.savez("big.npz", logits=x.astype(">f4"), labels=y.astype(">i2"))
    got = evaluate_files("big.npz:logits", "big.npz:labels", chunk_rows=300)
    assert same(got, evaluate_files("logits.npy", "labels.npy", chunk_rows=300))


# --------------------------------------------------------------------------------------------
# Items 4 and 5 under a checkpoint: a content fingerprint, and the CRC-32 after a resume


def _run_and_stop(monkeypatch, n_chunks, *args, **kwargs):
    """Run evaluate_files with a checkpoint saved after every chunk; crash after `n_chunks`."""
    with monkeypatch.context() as patch:
        stop_after(patch, n_chunks)
        with pytest.raises(StopRun):
            evaluate_files(*args, checkpoint_interval=0, **kwargs)


def expected_fingerprint(path):
    """The documented fingerprint, computed independently: BLAKE2b-128 of the size (8 bytes,
    little-endian), the first and last 64 KiB and 16 pages at size * (2i + 1) / 32."""
    content = open(path, "rb").read()
    size = len(content)
    digest = hashlib.blake2b(size.to_bytes(8, "little"), digest_size=16)
    digest.update(content[:65536])
    digest.update(content[max(size - 65536, 0):])
    for i in range(16):
        page = size * (2 * i + 1) // 32 // 4096 * 4096
        digest.update(content[page:page + 4096])
    return digest.hexdigest()


def test_checkpoint_records_the_fingerprint(data, tmp_path):
    evaluate_files("logits.npy", "labels.npy", checkpoint="state.json")
    inputs = json.loads(open("state.json").read())["inputs"]
    assert inputs["logits"]["fingerprint"] == expected_fingerprint("logits.npy")
    assert inputs["labels"]["fingerprint"] == expected_fingerprint("labels.npy")
    big = np.arange(300_000, dtype=np.float64).reshape(-1, 3)   # 2.4 MB: every region counts
    np.save(tmp_path / "big.npy", big)
    with _arrayfiles.open_array(tmp_path / "big.npy") as source:
        assert source.identity()["fingerprint"] == expected_fingerprint(tmp_path / "big.npy")


def test_resume_refuses_an_in_place_rewrite_with_the_same_size_and_mtime(data, monkeypatch):
    x, y = data
    args = ("logits.npy", "labels.npy")
    _run_and_stop(monkeypatch, 3, *args, chunk_rows=100, checkpoint="state.json")
    saved = json.loads(open("state.json").read())
    assert saved["next_row"] == 300
    before = os.stat("logits.npy")
    with open("logits.npy", "r+b") as fp:                 # new contents, same size, in place
        fp.write(npy_of(x[::-1].copy()))
    os.utime("logits.npy", ns=(before.st_atime_ns, before.st_mtime_ns))
    assert os.stat("logits.npy").st_mtime_ns == before.st_mtime_ns
    assert saved["inputs"]["logits"]["fingerprint"] != expected_fingerprint("logits.npy")
    with pytest.raises(EvalFileError) as info:
        evaluate_files(*args, chunk_rows=100, checkpoint="state.json")
    assert str(info.value) == (
        "state.json: checkpoint of another run (logits content changed since the checkpoint "
        "was written (its fingerprint differs)); delete it to start over, or run with the "
        "same files and options")


def _rows_outside_the_fingerprint(path, first, last):
    """A byte position in [first, last) that no fingerprint region of `path` covers."""
    regions = _arrayfiles.fingerprint_regions(os.path.getsize(path))
    for position in range(first, last):
        if not any(offset <= position < offset + length for offset, length in regions):
            return position
    raise AssertionError("no byte outside the fingerprint")


def test_resume_checks_the_crc_of_the_rows_before_the_resume_point(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rows = 20_000                                     # 800 kB of logits: room between pages
    rng = np.random.default_rng(3)
    x = rng.standard_normal((rows, C)).astype(np.float32)
    y = rng.integers(0, C, rows)
    np.savez("both.npz", logits=x, labels=y)
    args = ("both.npz:logits", "both.npz:labels")
    plain = evaluate_files(*args, chunk_rows=1000)

    _run_and_stop(monkeypatch, 10, *args, chunk_rows=1000, checkpoint="clean.json")
    resumed = evaluate_files(*args, chunk_rows=1000, checkpoint="clean.json")
    assert same(resumed, plain)                       # the re-read prefix checks out

    _run_and_stop(monkeypatch, 10, *args, chunk_rows=1000, checkpoint="state.json")
    assert json.loads(open("state.json").read())["next_row"] == 10_000
    span = _member_span("both.npz", "logits")
    data_start = span[1] - x.nbytes
    _flip_bit("both.npz", _rows_outside_the_fingerprint("both.npz", data_start + 65536,
                                                        data_start + 10_000 * C * 4))
    expected = _crc_message("both.npz:logits", "both.npz", span)
    with pytest.raises(EvalFileError) as info:
        evaluate_files(*args, chunk_rows=1000, checkpoint="state.json")
    assert str(info.value) == expected
    assert json.loads(open("state.json").read())["complete"] is False


# --------------------------------------------------------------------------------------------
# Item 8: a file cut short while it is being read is an error naming it, never a SIGBUS

TRUNCATE_AFTER_FIRST_CHUNK = """
import os, sys
from fastxent import cli
from fastxent._eval import files as _files
target, size = sys.argv[1], int(sys.argv[2])
check = _files._check_labels

def check_then_truncate(*args):
    check(*args)
    if os.path.getsize(target) > size:
        os.truncate(target, size)

_files._check_labels = check_then_truncate
sys.exit(cli.main(sys.argv[3:]))
"""


@pytest.mark.parametrize("spec", ["logits.npy", "both.npz:logits", "packed.npz:logits"])
def test_truncated_while_being_read(data, spec):
    x, y = data
    np.savez("both.npz", logits=x, labels=y)
    np.savez_compressed("packed.npz", logits=x, labels=y)
    target = spec.split(":")[0]
    was = os.path.getsize(target)
    size = 10_000                  # the first chunk (rows 0-99, 4000 bytes) lies before it
    done = subprocess.run(
        [sys.executable, "-c", TRUNCATE_AFTER_FIRST_CHUNK, target, str(size),
         "eval", spec, "labels.npy", "--chunk-rows", "100", "--no-progress"],
        capture_output=True, text=True, timeout=20)
    assert (done.returncode, done.stdout) == (2, ""), done.stderr
    assert done.stderr == (f"fastxent eval: error: {spec}: truncated while being read: the "
                           f"file is now {size} bytes, it was {was} when opened\n")


@pytest.mark.parametrize("spec", ["logits.npy", "both.npz:logits"])
def test_reads_reuse_one_buffer_and_return_the_rows(data, spec):
    x, _ = data
    np.savez("both.npz", logits=x)
    with _arrayfiles.open_array(spec) as source:
        assert isinstance(source, _arrayfiles._InPlaceArray)
        source.row_elements = C
        first = source.read(0, 20)
        np.testing.assert_array_equal(first.reshape(20, C), x[:20])
        second = source.read(30, 40)
        np.testing.assert_array_equal(second.reshape(10, C), x[30:40])
        assert np.shares_memory(first, second)             # one buffer per source
        assert second.ctypes.data % 64 == 0
        np.testing.assert_array_equal(source.read(5, 7).reshape(2, C), x[5:7])   # backwards
        source.verify()


# --------------------------------------------------------------------------------------------
# Item 12: FIFOs, devices, sockets and directories are refused before they are read


def _not_regular(spec, what):
    return (f"{spec}: {what}, not a .npy or .npz file (inputs must be regular files)")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
@pytest.mark.parametrize("argv, spec", [
    (["pipe", "labels.npy"], "pipe"),
    (["logits.npy", "pipe"], "pipe"),
    (["logits.npy", "labels.npy", "--weight", "pipe"], "pipe"),
    (["both.npz:logits", "pipe.npz:labels"], "pipe.npz:labels"),
])
def test_fifo_is_refused_without_waiting_for_a_writer(data, argv, spec):
    x, y = data
    np.savez("both.npz", logits=x)
    os.mkfifo("pipe")
    os.mkfifo("pipe.npz")
    # The timeout is a safety net for a regression (opening a FIFO waits for a writer).
    done = subprocess.run([sys.executable, "-m", "fastxent.cli", "eval", *argv, "--no-progress",
                           "--checkpoint", "state.json"],
                          capture_output=True, text=True, timeout=20)
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == (f"fastxent eval: error: "
                           f"{_not_regular(spec, 'is a FIFO (named pipe)')}\n")
    assert not os.path.exists("state.json")


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="no /dev/zero here")
def test_character_device_is_refused(data):
    with pytest.raises(EvalFileError) as info:
        evaluate_files("/dev/zero", "labels.npy")
    assert str(info.value) == _not_regular("/dev/zero", "is a character device")


def test_directory_is_refused(data, tmp_path):
    os.mkdir("folder.npy")
    with pytest.raises(EvalFileError) as info:
        evaluate_files("logits.npy", "folder.npy")
    assert str(info.value) == _not_regular("folder.npy", "is a directory")


@pytest.mark.skipif(not hasattr(socket, "AF_UNIX"), reason="no Unix sockets here")
def test_socket_is_refused(data):
    with socket.socket(socket.AF_UNIX) as server:
        server.bind("sock.npy")
        with pytest.raises(EvalFileError) as info:
            evaluate_files("sock.npy", "labels.npy")
    assert str(info.value) == _not_regular("sock.npy", "is a socket")
