"""fastxent._files.evaluate_files: values, file formats, bad files and checkpoints."""

import json
import math
import os

import numpy as np
import pytest

import fastxent
from fastxent import _arrayfiles, _files
from fastxent import EvalFileError, evaluate_files

N, C = 1000, 10


def same(a, b):
    """Bitwise-equal results (NaN equals NaN), compared through to_dict()."""
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple, np.ndarray)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, float) and math.isnan(a):
        return isinstance(b, float) and math.isnan(b)
    return a == b and type(a) is type(b)


def close(a, b, rtol=1e-12):
    """Results equal up to float64 rounding (NaN equals NaN)."""
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(close(a[k], b[k], rtol) for k in a)
    if isinstance(a, (list, tuple, np.ndarray)):
        return len(a) == len(b) and all(close(x, y, rtol) for x, y in zip(a, b))
    if isinstance(a, float):
        return (math.isnan(a) and math.isnan(b)) or math.isclose(a, b, rel_tol=rtol, abs_tol=0)
    return a == b


def chunked(x, t, chunk_rows, **options):
    """The Evaluator over the same chunks as evaluate_files uses."""
    ev = fastxent.Evaluator(**options)
    for begin in range(0, len(x), chunk_rows):
        ev.update(x[begin:begin + chunk_rows], t[begin:begin + chunk_rows])
    return ev.result()


@pytest.fixture
def data(tmp_path):
    rng = np.random.default_rng(0)
    x = (2.0 * rng.standard_normal((N, C))).astype(np.float32)
    y = rng.integers(0, C, N)
    x[np.arange(N), y] += 1.5          # better than chance, so the metrics mean something
    np.save(tmp_path / "logits.npy", x)
    np.save(tmp_path / "labels.npy", y)
    return tmp_path, x, y


def path(tmp_path, name):
    return str(tmp_path / name)


# --------------------------------------------------------------------------------------------
# Values


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("chunk_rows", [None, 1, 7, 100, N, 5 * N])
def test_values_match_evaluator_and_evaluate(tmp_path, dtype, chunk_rows):
    rng = np.random.default_rng(1)
    x = (3 * rng.standard_normal((N, C))).astype(dtype)
    y = rng.integers(0, C, N).astype(np.int32)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    got = evaluate_files(path(tmp_path, "x.npy"), path(tmp_path, "y.npy"), topk=(1, 3, 5),
                         chunk_rows=chunk_rows).to_dict()
    rows = chunk_rows or N                           # the default chunk holds the whole file
    assert same(got, chunked(x, y, rows, topk=(1, 3, 5)).to_dict())
    assert close(got, fastxent.evaluate(x, y, topk=(1, 3, 5)).to_dict())


def test_default_chunk_is_bitwise_evaluate(data):
    tmp_path, x, y = data
    got = evaluate_files(path(tmp_path, "logits.npy"), path(tmp_path, "labels.npy"))
    assert same(got.to_dict(), fastxent.evaluate(x, y).to_dict())


def test_options_soft_targets_and_probabilities(tmp_path):
    rng = np.random.default_rng(2)
    x = rng.standard_normal((N, C))
    y = rng.integers(0, C, N)
    y[::7] = -100
    weight = rng.uniform(0.5, 2.0, C)
    soft = rng.uniform(0, 1, (N, C))
    soft /= soft.sum(axis=1, keepdims=True)
    p = np.exp(x) / np.exp(x).sum(axis=1, keepdims=True)
    for name, arr in {"x": x, "y": y, "soft": soft, "p": p}.items():
        np.save(tmp_path / f"{name}.npy", arr)
    opts = {"ignore_index": -100, "weight": weight, "topk": (2,), "eps": 1e-9}
    got = evaluate_files(path(tmp_path, "x.npy"), path(tmp_path, "y.npy"), chunk_rows=64, **opts)
    assert same(got.to_dict(), chunked(x, y, 64, **opts).to_dict())
    got = evaluate_files(path(tmp_path, "x.npy"), path(tmp_path, "soft.npy"), chunk_rows=64)
    assert got.accuracy is None and got.topk is None
    assert same(got.to_dict(), chunked(x, soft, 64).to_dict())
    got = evaluate_files(path(tmp_path, "p.npy"), path(tmp_path, "y.npy"), from_logits=False,
                         ignore_index=-100, chunk_rows=100)
    assert same(got.to_dict(),
                chunked(p, y, 100, from_logits=False, ignore_index=-100).to_dict())


def test_n_dimensional_logits(tmp_path):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((8, 9, C)).astype(np.float32)
    y = rng.integers(0, C, (8, 9)).astype(np.uint8)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    got = evaluate_files(path(tmp_path, "x.npy"), path(tmp_path, "y.npy"), chunk_rows=10)
    assert same(got.to_dict(), chunked(x.reshape(-1, C), y.reshape(-1), 10).to_dict())


def test_converted_dtypes(tmp_path, data):
    _, x, y = data
    np.save(tmp_path / "be.npy", x.astype(">f4"))               # big-endian: read as float32
    np.save(tmp_path / "half.npy", x.astype(np.float16))        # float16: as evaluate does
    np.save(tmp_path / "be_labels.npy", y.astype(">i2"))
    got = evaluate_files(path(tmp_path, "be.npy"), path(tmp_path, "be_labels.npy"),
                         chunk_rows=33)
    assert same(got.to_dict(), chunked(x, y, 33).to_dict())
    got = evaluate_files(path(tmp_path, "half.npy"), path(tmp_path, "labels.npy"),
                         chunk_rows=33)
    assert same(got.to_dict(), chunked(x.astype(np.float16), y, 33).to_dict())


def test_empty_arrays(tmp_path):
    np.save(tmp_path / "x.npy", np.zeros((0, C), np.float32))
    np.save(tmp_path / "y.npy", np.zeros(0, np.int64))
    got = evaluate_files(path(tmp_path, "x.npy"), path(tmp_path, "y.npy"))
    assert got.count == 0 and math.isnan(got.loss)


# --------------------------------------------------------------------------------------------
# .npz files


def test_npz_single_member_and_compressed(data):
    tmp_path, x, y = data
    reference = chunked(x, y, 37).to_dict()
    np.savez(tmp_path / "single.npz", x)
    np.savez(tmp_path / "both.npz", logits=x, labels=y)
    np.savez_compressed(tmp_path / "packed.npz", logits=x, labels=y)
    pairs = [
        ("single.npz", "labels.npy"),
        ("both.npz:logits", "both.npz:labels"),
        ("both.npz:logits.npy", "both.npz:labels.npy"),
        ("packed.npz:logits", "packed.npz:labels"),
        ("packed.npz:logits", "both.npz:labels"),
    ]
    for logits, labels in pairs:
        got = evaluate_files(path(tmp_path, logits), path(tmp_path, labels), chunk_rows=37)
        assert same(got.to_dict(), reference), (logits, labels)


def test_uncompressed_npz_member_is_memory_mapped(data):
    tmp_path, x, _ = data
    np.savez(tmp_path / "both.npz", logits=x)
    with _arrayfiles.open_array(path(tmp_path, "both.npz:logits")) as source:
        assert isinstance(source, _arrayfiles._MappedArray)
        source.row_elements = C
        np.testing.assert_array_equal(source.read(10, 20).reshape(10, C), x[10:20])
        source.release(0, 20)                    # dropped pages are read again on demand
        np.testing.assert_array_equal(source.read(0, 20).reshape(20, C), x[:20])


def test_compressed_member_reads_backwards(data):
    tmp_path, x, _ = data
    np.savez_compressed(tmp_path / "packed.npz", logits=x)
    with _arrayfiles.open_array(path(tmp_path, "packed.npz:logits")) as source:
        assert isinstance(source, _arrayfiles._StreamedArray)
        source.row_elements = C
        np.testing.assert_array_equal(source.read(500, 510).reshape(10, C), x[500:510])
        np.testing.assert_array_equal(source.read(3, 5).reshape(2, C), x[3:5])


def test_read_array(tmp_path):
    w = np.arange(6.0).reshape(2, 3)
    np.save(tmp_path / "w.npy", np.asfortranarray(w))
    np.savez(tmp_path / "w.npz", weights=w)
    np.testing.assert_array_equal(_arrayfiles.read_array(path(tmp_path, "w.npy")), w)
    np.testing.assert_array_equal(_arrayfiles.read_array(path(tmp_path, "w.npz:weights")), w)


def test_colon_in_a_real_file_name(data):
    tmp_path, x, y = data
    np.save(tmp_path / "a:b.npy", x)
    got = evaluate_files(path(tmp_path, "a:b.npy"), path(tmp_path, "labels.npy"))
    assert same(got.to_dict(), fastxent.evaluate(x, y).to_dict())


# --------------------------------------------------------------------------------------------
# Bad files: an EvalFileError (a ValueError) naming the file and the problem


def _write(tmp_path, name, content):
    (tmp_path / name).write_bytes(content)


def _write_bad_files(tmp_path, x, y):
    """Write every file that BAD_FILES names (beside logits.npy and labels.npy)."""
    npy = (tmp_path / "logits.npy").read_bytes()
    _write(tmp_path, "trunc.npy", npy[:-1000])
    _write(tmp_path, "cut_header.npy", npy[:40])
    _write(tmp_path, "text.npy", b"0.5 0.25\n")
    _write(tmp_path, "empty.npy", b"")
    np.save(tmp_path / "y999.npy", y[:999])
    np.save(tmp_path / "int_logits.npy", x.astype(np.int32))
    np.save(tmp_path / "complex.npy", x.astype(np.complex64))
    np.save(tmp_path / "objects.npy", np.array([[None]] * 3, dtype=object), allow_pickle=True)
    np.save(tmp_path / "records.npy", np.zeros((N, C), dtype=[("a", "f4")]))
    np.save(tmp_path / "vector.npy", x[:, 0])
    np.save(tmp_path / "no_classes.npy", np.zeros((N, 0), np.float32))
    np.save(tmp_path / "fortran.npy", np.asfortranarray(x))
    np.save(tmp_path / "bool_labels.npy", y > 3)
    np.save(tmp_path / "float_labels.npy", y.astype(np.float64))
    np.save(tmp_path / "labels2d.npy", y.reshape(100, 10))
    np.save(tmp_path / "soft_bad.npy", np.zeros((N, C + 1)))
    np.save(tmp_path / "soft_range.npy", np.full((N, C), 2.0))
    big, negative = y.copy(), y.copy()
    big[500] = C
    negative[7] = -3
    np.save(tmp_path / "big.npy", big)
    np.save(tmp_path / "negative.npy", negative)
    np.save(tmp_path / "big_u64.npy", big.astype(np.uint64))
    np.save(tmp_path / "x3d.npy", x.reshape(10, 100, C))
    np.save(tmp_path / "y2d_bad.npy", big.reshape(10, 100))
    np.savez(tmp_path / "two.npz", logits=x, labels=y)
    stored = (tmp_path / "two.npz").read_bytes()
    _write(tmp_path, "two_cut.npz", stored[:-200])
    _write(tmp_path, "notzip.npz", b"PK\x03\x04" + b"\0" * 60)
    np.savez_compressed(tmp_path / "packed.npz", logits=x)
    packed = bytearray((tmp_path / "packed.npz").read_bytes())
    packed[len(packed) // 2:len(packed) // 2 + 64] = bytes(64)       # corrupt the deflate stream
    _write(tmp_path, "packed_bad.npz", bytes(packed))


# (logits, labels, kwargs, message fragments); the files are named relative to their directory
BAD_FILES = [
    ("logits.npy", "y999.npy", {}, ["y999.npy: 999 rows, but ", "logits.npy has 1000"]),
    ("trunc.npy", "labels.npy", {},
     ["trunc.npy: truncated: header says (1000, 10) float32 = 40000 bytes of data, "
      "file has 39000"]),
    ("cut_header.npy", "labels.npy", {}, ["cut_header.npy: not a valid .npy file"]),
    ("text.npy", "labels.npy", {}, ["text.npy: not a .npy or .npz file"]),
    ("empty.npy", "labels.npy", {}, ["empty.npy: empty file"]),
    ("int_logits.npy", "labels.npy", {}, ["int_logits.npy: dtype int32", "floating point"]),
    ("complex.npy", "labels.npy", {}, ["complex.npy: dtype complex64"]),
    ("objects.npy", "labels.npy", {}, ["objects.npy: dtype object", "Python objects"]),
    ("records.npy", "labels.npy", {}, ["records.npy: structured dtype"]),
    ("vector.npy", "labels.npy", {}, ["vector.npy: shape (1000,)", "class axis"]),
    ("no_classes.npy", "labels.npy", {}, ["no_classes.npy: shape (1000, 0) has no classes"]),
    ("fortran.npy", "labels.npy", {}, ["fortran.npy: ", "Fortran order"]),
    ("logits.npy", "bool_labels.npy", {}, ["bool_labels.npy: dtype bool"]),
    ("logits.npy", "float_labels.npy", {},
     ["float_labels.npy: float64 soft targets of shape (1000,)", "(1000, 10)",
      "integer dtype"]),
    ("logits.npy", "labels2d.npy", {},
     ["labels2d.npy: shape (100, 10) does not fit logits.npy", "(1000,)"]),
    ("logits.npy", "soft_bad.npy", {}, ["soft_bad.npy:", "(1000, 11)", "(1000, 10)"]),
    ("logits.npy", "soft_range.npy", {}, ["soft_range.npy: in rows 0 to 249",
                                          "must lie in [0, 1]"]),
    ("logits.npy", "big.npy", {}, ["big.npy: label 10 at row 500 is out of range [0, 10)"]),
    ("logits.npy", "negative.npy", {"ignore_index": -100},
     ["negative.npy: label -3 at row 7 is out of range [0, 10) and is not ignore_index "
      "-100"]),
    ("logits.npy", "big_u64.npy", {}, ["big_u64.npy: label 10 at row 500"]),
    ("x3d.npy", "y2d_bad.npy", {}, ["y2d_bad.npy: label 10 at index (5, 0)"]),
    ("two.npz", "labels.npy", {}, ["two.npz: holds 2 arrays (logits, labels)",
                                   "two.npz:NAME"]),
    ("two.npz:nope", "labels.npy", {}, ["two.npz:nope: ", "has no array 'nope'",
                                        "logits, labels"]),
    ("logits.npy:x", "labels.npy", {}, ["logits.npy:x: no such file"]),
    ("two_cut.npz:logits", "labels.npy", {}, ["two_cut.npz:logits: not a valid .npz"]),
    ("notzip.npz", "labels.npy", {}, ["notzip.npz: not a valid .npz (zip) file"]),
    ("packed_bad.npz", "labels.npy", {}, ["packed_bad.npz: "]),
    ("logits.npy", "labels.npy", {"weight": np.ones(C + 1)},
     ["weight has 11 entries", "logits.npy has 10 classes"]),
]


@pytest.mark.parametrize("logits, labels, kwargs, fragments", BAD_FILES,
                         ids=[f"{case[0]}-{case[1]}" for case in BAD_FILES])
def test_bad_files(data, monkeypatch, logits, labels, kwargs, fragments):
    tmp_path, x, y = data
    _write_bad_files(tmp_path, x, y)
    monkeypatch.chdir(tmp_path)
    with pytest.raises((EvalFileError, FileNotFoundError)) as info:
        evaluate_files(logits, labels, chunk_rows=250, **kwargs)
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message
    assert message.startswith((logits, labels, "weight"))


def test_bad_file_errors_are_value_errors(data):
    tmp_path, _, _ = data
    np.save(tmp_path / "y999.npy", np.zeros(999, np.int64))
    with pytest.raises(ValueError, match="999 rows"):
        evaluate_files(path(tmp_path, "logits.npy"), path(tmp_path, "y999.npy"))


def test_missing_file(data):
    tmp_path, _, _ = data
    with pytest.raises(FileNotFoundError, match="nothing.npy: no such file"):
        evaluate_files(path(tmp_path, "nothing.npy"), path(tmp_path, "labels.npy"))


@pytest.mark.parametrize("chunk_rows", [0, -1, 2.5, True])
def test_bad_chunk_rows(data, chunk_rows):
    tmp_path, _, _ = data
    with pytest.raises(ValueError, match="chunk_rows"):
        evaluate_files(path(tmp_path, "logits.npy"), path(tmp_path, "labels.npy"),
                       chunk_rows=chunk_rows)


# --------------------------------------------------------------------------------------------
# Checkpoints


def _files_in(directory):
    return sorted(os.listdir(directory))


def test_checkpoint_complete_and_reused(data, monkeypatch):
    tmp_path, x, y = data
    state = tmp_path / "state.json"
    args = (path(tmp_path, "logits.npy"), path(tmp_path, "labels.npy"))
    plain = evaluate_files(*args, chunk_rows=64)
    first = evaluate_files(*args, chunk_rows=64, checkpoint=state)
    assert same(first.to_dict(), plain.to_dict())
    saved = json.loads(state.read_text())
    assert saved["complete"] is True and saved["next_row"] == N and saved["chunk_rows"] == 64
    assert saved["format"] == _files.CHECKPOINT_FORMAT
    assert saved["inputs"]["logits"]["shape"] == [N, C]
    assert saved["inputs"]["labels"]["dtype"] == y.dtype.str
    assert not [name for name in _files_in(tmp_path) if name.endswith(".tmp")]

    def no_reading(*_):
        raise AssertionError("a complete checkpoint must not read the data")

    monkeypatch.setattr(_arrayfiles._MappedArray, "read", no_reading)
    again = evaluate_files(*args, checkpoint=state)     # chunk_rows taken from the checkpoint
    assert same(again.to_dict(), plain.to_dict())


class _Stop(Exception):
    pass


def _stop_after(monkeypatch, n_chunks):
    """Make the chunk loop raise after `n_chunks` label checks (a crash mid-run)."""
    calls = []
    original = _files._check_labels

    def check(*args):
        calls.append(1)
        if len(calls) > n_chunks:
            raise _Stop
        return original(*args)

    monkeypatch.setattr(_files, "_check_labels", check)


@pytest.mark.parametrize("stop_after", [1, 5, 15])
def test_resume_is_bitwise_identical(data, monkeypatch, stop_after):
    tmp_path, x, y = data
    state = tmp_path / "state.json"
    args = (path(tmp_path, "logits.npy"), path(tmp_path, "labels.npy"))
    plain = evaluate_files(*args, chunk_rows=64, topk=(1, 2))
    with monkeypatch.context() as patch:
        _stop_after(patch, stop_after)
        with pytest.raises(_Stop):
            evaluate_files(*args, chunk_rows=64, topk=(1, 2), checkpoint=state,
                           checkpoint_interval=0)
    saved = json.loads(state.read_text())
    assert saved["complete"] is False and saved["next_row"] == 64 * stop_after
    resumed = evaluate_files(*args, chunk_rows=64, topk=(1, 2), checkpoint=state)
    assert same(resumed.to_dict(), plain.to_dict())
    assert json.loads(state.read_text())["complete"] is True


def test_resume_compressed_member(data, monkeypatch):
    tmp_path, x, y = data
    np.savez_compressed(tmp_path / "packed.npz", logits=x, labels=y)
    state = tmp_path / "state.json"
    args = (path(tmp_path, "packed.npz:logits"), path(tmp_path, "packed.npz:labels"))
    plain = evaluate_files(*args, chunk_rows=50)
    with monkeypatch.context() as patch:
        _stop_after(patch, 7)
        with pytest.raises(_Stop):
            evaluate_files(*args, chunk_rows=50, checkpoint=state, checkpoint_interval=0)
    assert json.loads(state.read_text())["next_row"] == 350
    assert same(evaluate_files(*args, chunk_rows=50, checkpoint=state).to_dict(),
                plain.to_dict())


def test_checkpoint_of_another_run(data):
    tmp_path, x, y = data
    state = tmp_path / "state.json"
    args = (path(tmp_path, "logits.npy"), path(tmp_path, "labels.npy"))
    evaluate_files(*args, chunk_rows=64, checkpoint=state)
    with pytest.raises(EvalFileError, match=r"state.json: checkpoint of another run "
                                            r"\(option topk was \[1, 5\], now \[1\]\); delete it"):
        evaluate_files(*args, chunk_rows=64, topk=(1,), checkpoint=state)
    with pytest.raises(EvalFileError, match="chunk_rows was 64, now 65"):
        evaluate_files(*args, chunk_rows=65, checkpoint=state)
    with pytest.raises(EvalFileError, match="option ignore_index was None, now -1"):
        evaluate_files(*args, chunk_rows=64, ignore_index=-1, checkpoint=state)
    x2 = x.copy()
    x2[0, 0] += 1
    np.save(tmp_path / "logits.npy", x2)                # same shape, new contents
    os.utime(tmp_path / "logits.npy", ns=(1, 1))
    with pytest.raises(EvalFileError, match="logits mtime_ns was"):
        evaluate_files(*args, chunk_rows=64, checkpoint=state)
    np.save(tmp_path / "other.npy", y)
    with pytest.raises(EvalFileError, match="labels path was"):
        evaluate_files(args[0], path(tmp_path, "other.npy"), chunk_rows=64, checkpoint=state)


def test_bad_checkpoint_files(data):
    tmp_path, _, _ = data
    args = (path(tmp_path, "logits.npy"), path(tmp_path, "labels.npy"))
    (tmp_path / "garbage.json").write_text("{not json")
    with pytest.raises(EvalFileError, match="garbage.json: not a fastxent eval checkpoint"):
        evaluate_files(*args, checkpoint=tmp_path / "garbage.json")
    (tmp_path / "other.json").write_text('{"some": "thing"}')
    with pytest.raises(EvalFileError, match="other.json: not a fastxent eval checkpoint"):
        evaluate_files(*args, checkpoint=tmp_path / "other.json")
    with pytest.raises(EvalFileError, match="does not exist"):
        evaluate_files(*args, checkpoint=tmp_path / "missing_dir" / "state.json")
    state = tmp_path / "state.json"
    evaluate_files(*args, chunk_rows=64, checkpoint=state)
    saved = json.loads(state.read_text())
    saved["next_row"] = 65
    state.write_text(json.dumps(saved))
    with pytest.raises(EvalFileError, match="corrupt checkpoint"):
        evaluate_files(*args, checkpoint=state)


# --------------------------------------------------------------------------------------------
# Progress


def test_progress_bar_on_request(data, capsys):
    tmp_path, _, _ = data
    args = (path(tmp_path, "logits.npy"), path(tmp_path, "labels.npy"))
    evaluate_files(*args, chunk_rows=100, progress=True)
    err = capsys.readouterr().err
    assert "1.00k/1.00k" in err and "row" in err
    evaluate_files(*args, chunk_rows=100, progress=False)
    evaluate_files(*args, chunk_rows=100)                 # stderr is not a terminal here
    assert capsys.readouterr().err == ""
