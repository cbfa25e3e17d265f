"""fastxent._eval.files.evaluate_files: values, file formats, bad files and checkpoints."""

import contextlib
import itertools
import json
import math
import os

import numpy as np
import pytest

import fastxent
from fastxent import EvalFileError, evaluate_files
from fastxent._eval import arrayfiles as _arrayfiles
from fastxent._eval import checkpoint as _checkpoint
from fastxent._eval import files as _files
from helpers import StopRun, same, stop_after, strict_loads

N, C = 1000, 10


def close(a, b, rtol=1e-12):
    """Results equal up to float64 rounding (NaN equals NaN)."""
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(close(a[k], b[k], rtol) for k in a)
    if isinstance(a, (list, tuple, np.ndarray)):
        return len(a) == len(b) and all(close(x, y, rtol) for x, y in zip(a, b, strict=True))
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
    assert saved["format"] == _checkpoint.CHECKPOINT_FORMAT
    assert saved["inputs"]["logits"]["shape"] == [N, C]
    assert saved["inputs"]["labels"]["dtype"] == y.dtype.str
    assert not [name for name in _files_in(tmp_path) if name.endswith(".tmp")]

    def no_reading(*_):
        raise AssertionError("a complete checkpoint must not read the data")

    monkeypatch.setattr(_files, "_run_chunks", no_reading)
    again = evaluate_files(*args, checkpoint=state)     # chunk_rows taken from the checkpoint
    assert same(again.to_dict(), plain.to_dict())


@pytest.mark.parametrize("n_chunks", [1, 5, 15])
def test_resume_is_bitwise_identical(data, monkeypatch, n_chunks):
    tmp_path, x, y = data
    state = tmp_path / "state.json"
    args = (path(tmp_path, "logits.npy"), path(tmp_path, "labels.npy"))
    plain = evaluate_files(*args, chunk_rows=64, topk=(1, 2))
    with monkeypatch.context() as patch:
        stop_after(patch, n_chunks)
        with pytest.raises(StopRun):
            evaluate_files(*args, chunk_rows=64, topk=(1, 2), checkpoint=state,
                           checkpoint_interval=0)
    saved = json.loads(state.read_text())
    assert saved["complete"] is False and saved["next_row"] == 64 * n_chunks
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
        stop_after(patch, 7)
        with pytest.raises(StopRun):
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


# --------------------------------------------------------------------------------------------
# Options and checkpoints at the edges


def _no_file_opened(monkeypatch):
    def refuse(spec):
        raise AssertionError(f"{spec} was opened before the options were checked")

    monkeypatch.setattr(_files, "open_array", refuse)


def test_numpy_scalar_options_checkpoint_and_resume(data, monkeypatch):
    """NumPy-scalar options (a 0-d array too) are saved as plain JSON numbers at the first
    save, and a run with the same options given as Python numbers resumes from it, bit for
    bit the result of a run never stopped."""
    tmp_path, x, y = data
    y = y.copy()
    y[::9] = -1
    np.save(tmp_path / "labels.npy", y)
    x[5, 3] = np.nan                                    # NaN sums go through the checkpoint
    np.save(tmp_path / "logits.npy", x)
    state = tmp_path / "state.json"
    args = (path(tmp_path, "logits.npy"), path(tmp_path, "labels.npy"))
    weight = np.linspace(0.5, 2.0, C).astype(np.float32)
    numpy_options = dict(ignore_index=np.int64(-1), eps=np.float32(1e-6),
                         topk=np.array([3, 1]), weight=weight, from_logits=np.bool_(True),
                         n_threads=np.array(1))
    python_options = dict(ignore_index=-1, eps=float(np.float32(1e-6)), topk=(1, 3),
                          weight=weight.tolist())
    plain = evaluate_files(*args, chunk_rows=64, **python_options)
    with monkeypatch.context() as patch:
        stop_after(patch, 3)
        with pytest.raises(StopRun):
            evaluate_files(*args, chunk_rows=64, checkpoint=state, checkpoint_interval=0,
                           **numpy_options)
    saved = strict_loads(state.read_text())
    assert saved["next_row"] == 192 and saved["evaluator"]["sums"]["loss"] == "NaN"
    assert saved["options"] == {"from_logits": True, "topk": [1, 3], "weight": weight.tolist(),
                                "ignore_index": -1, "eps": float(np.float32(1e-6)),
                                "per_class": False, "confusion": False, "prior": None}
    resumed = evaluate_files(*args, chunk_rows=64, checkpoint=state, **python_options)
    assert same(resumed.to_dict(), plain.to_dict()) and math.isnan(resumed.loss)
    assert strict_loads(state.read_text())["complete"] is True


@pytest.mark.parametrize("options, error, message", [
    (dict(eps=math.nan), ValueError, "eps must be a number in [0, 0.5), got nan"),
    (dict(eps=np.float32("inf")), ValueError, "eps must be a number in [0, 0.5), got inf"),
    (dict(weight=np.full(C, np.nan)), ValueError, "weight must be finite: weight[0] = nan"),
    (dict(weight=np.ones((2, 5))), ValueError, "weight must be 1-D"),
    (dict(ignore_index=2**64 - 1), ValueError, "ignore_index must be None or an int that fits in "
                                               "int64"),
    (dict(ignore_index=np.True_), TypeError, "ignore_index must be None or an int that fits in "
                                             "int64 (labels are compared as int64), got True"),
    (dict(topk=(0,)), ValueError, "topk must hold positive ints"),
    (dict(topk=(2**63,)), ValueError, "topk must hold positive ints of at most 2**63 - 1"),
    (dict(n_threads=2**31), ValueError, "n_threads=2147483648 is out of range"),
    (dict(chunk_rows=-64), ValueError, "chunk_rows must be a positive int, got -64"),
    (dict(chunk_rows=np.True_), ValueError, "chunk_rows must be a positive int"),
    (dict(checkpoint_interval=math.nan), ValueError,
     "checkpoint_interval must be a number of seconds >= 0, got nan"),
    (dict(checkpoint_interval=-1), ValueError, "checkpoint_interval must be a number"),
], ids=lambda v: repr(v) if not isinstance(v, dict) else ",".join(v))
def test_bad_options_raise_before_any_file_is_opened(data, monkeypatch, options, error,
                                                     message):
    """An invalid option raises at once with a message naming it: it is never blamed on the
    data files after a chunk was read."""
    tmp_path, _, _ = data
    _no_file_opened(monkeypatch)
    with pytest.raises(error) as info:
        evaluate_files(path(tmp_path, "logits.npy"), path(tmp_path, "labels.npy"),
                       checkpoint=tmp_path / "state.json", **options)
    assert message in str(info.value)
    assert not isinstance(info.value, EvalFileError)
    assert _files_in(tmp_path) == ["labels.npy", "logits.npy"]


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs Linux /proc")
def test_checkpoint_where_no_file_can_be_created(data, monkeypatch):
    """/proc refuses new files even to root: the checkpoint's place is tried before any file
    is opened, and the error names the checkpoint, not a hidden temporary file."""
    tmp_path, _, _ = data
    _no_file_opened(monkeypatch)
    with pytest.raises(EvalFileError) as info:
        evaluate_files(path(tmp_path, "logits.npy"), path(tmp_path, "labels.npy"),
                       checkpoint="/proc/fastxent-state.json")
    assert str(info.value).startswith("/proc/fastxent-state.json: cannot save the checkpoint: "
                                      "cannot create a file in /proc (")
    assert ".tmp" not in str(info.value)


@pytest.mark.skipif(os.geteuid() == 0 if hasattr(os, "geteuid") else True,
                    reason="root writes read-only directories; needs POSIX permissions")
def test_checkpoint_in_a_read_only_directory(data, monkeypatch):
    tmp_path, _, _ = data
    locked = tmp_path / "locked"
    locked.mkdir()
    (locked / "old.json").write_text("{}")
    _no_file_opened(monkeypatch)
    args = (path(tmp_path, "logits.npy"), path(tmp_path, "labels.npy"))
    try:
        locked.chmod(0o500)
        with pytest.raises(EvalFileError, match=r"state.json: cannot save the checkpoint: "
                                                r"cannot create a file in .*locked "
                                                r"\(Permission denied\)"):
            evaluate_files(*args, checkpoint=locked / "state.json")
        (locked / "old.json").chmod(0o400)
        with pytest.raises(EvalFileError, match="old.json: cannot save the checkpoint: the "
                                                "file is read-only"):
            evaluate_files(*args, checkpoint=locked / "old.json")
    finally:
        locked.chmod(0o700)


def test_checkpoint_that_is_not_a_regular_file(data, monkeypatch):
    """A directory or a FIFO as the checkpoint is refused at once (a FIFO is never opened:
    opening it would block)."""
    tmp_path, _, _ = data
    (tmp_path / "folder").mkdir()
    _no_file_opened(monkeypatch)
    args = (path(tmp_path, "logits.npy"), path(tmp_path, "labels.npy"))
    with pytest.raises(EvalFileError, match="folder: cannot save the checkpoint: it exists "
                                            "and is not a regular file"):
        evaluate_files(*args, checkpoint=tmp_path / "folder")
    if hasattr(os, "mkfifo"):
        os.mkfifo(tmp_path / "pipe")
        with pytest.raises(EvalFileError, match="pipe: cannot save the checkpoint: it exists"):
            evaluate_files(*args, checkpoint=tmp_path / "pipe")


def test_failed_save_names_the_checkpoint(data, monkeypatch):
    """A save that fails during the run (the directory became unwritable) raises
    EvalFileError naming the checkpoint, and leaves no temporary file."""
    tmp_path, _, _ = data
    state = tmp_path / "state.json"
    real_mkstemp = _checkpoint.tempfile.mkstemp
    calls = []

    def mkstemp_then_refuse(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:                       # the check before the run
            return real_mkstemp(*args, **kwargs)
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(_checkpoint.tempfile, "mkstemp", mkstemp_then_refuse)
    with pytest.raises(EvalFileError) as info:
        evaluate_files(path(tmp_path, "logits.npy"), path(tmp_path, "labels.npy"),
                       chunk_rows=100, checkpoint=state, checkpoint_interval=0)
    assert str(info.value) == f"{state}: cannot save the checkpoint (Permission denied)"
    assert len(calls) == 2
    assert _files_in(tmp_path) == ["labels.npy", "logits.npy"]


def _edited(state, path_, value, *more):
    """Set the entry at `path_` of the saved checkpoint to `value` (delete it for KeyError);
    `more`: further (path, value) pairs, set the same way."""
    saved = json.loads(state.read_text())
    for where, new in [(path_, value), *zip(more[::2], more[1::2], strict=True)]:
        target = saved
        for key in where[:-1]:
            target = target[key]
        if new is KeyError:
            del target[where[-1]]
        else:
            target[where[-1]] = new
    state.write_text(json.dumps(saved))


@pytest.mark.parametrize("edit, complete, message", [
    ((["inputs"], []), True, "corrupt checkpoint (inputs must be an object with logits and "
                             "labels, got [])"),
    ((["inputs", "labels"], "labels.npy"), True,
     "corrupt checkpoint (inputs.labels must be an object, got 'labels.npy')"),
    ((["complete"], "no"), False, "corrupt checkpoint (complete must be true or false, got "
                                  "'no')"),
    ((["complete"], 1), True, "corrupt checkpoint (complete must be true or false, got 1)"),
    ((["complete"], True), False, "corrupt checkpoint (marked complete at next_row 256 of "
                                  "1000 rows)"),
    ((["complete"], KeyError), True, "corrupt checkpoint (no complete)"),
    ((["next_row"], True), False, "corrupt checkpoint (next_row must be a row index, got "
                                  "True)"),
    ((["next_row"], 256.0), False, "corrupt checkpoint (next_row must be a row index, got "
                                   "256.0)"),
    ((["next_row"], -64), False, "corrupt checkpoint (next_row -64, rows 1000, chunk_rows 64)"),
    ((["next_row"], 1064), False, "corrupt checkpoint (next_row 1064 of 1000 rows in chunks "
                                  "of 64)"),
    ((["chunk_rows"], "64"), False, "corrupt checkpoint (chunk_rows must be a positive int, "
                                    "got '64')"),
    ((["rows"], None), False, "corrupt checkpoint (rows must be a number of rows, got None)"),
    ((["options"], None), False, "corrupt checkpoint (options must be an object, got None)"),
    ((["evaluator"], []), False, "corrupt checkpoint (evaluator must be an Evaluator state, "
                                 "got [])"),
    ((["fastxent"], 1), False, "corrupt checkpoint (fastxent must be a version string, got "
                               "1)"),
    ((["version"], True), False, "not a fastxent eval checkpoint (version 3)"),
    ((["version"], 1), False, "a checkpoint of format version 1, written by another fastxent "
                              "release (this one reads version 3)"),
    ((["version"], 2), False, "a checkpoint of format version 2, written by another fastxent "
                              "release (this one reads version 3)"),
    ((["evaluator", "options", "from_logits"], "yes"), False,
     "corrupt checkpoint (invalid Evaluator state: from_logits must be true or false, got "
     "'yes')"),
    ((["evaluator", "options", "topk"], [1]), False,
     ("corrupt checkpoint (invalid Evaluator state: sums must have the keys loss, ",
      ", predicted, correct@1, got loss, ", ", correct@1, correct@5); ")),
    ((["evaluator", "tables", "class_mass"], [0.0] * 9), False,
     "corrupt checkpoint (invalid Evaluator state: tables.class_mass must hold 10 numbers, "
     "got 9)"),
    ((["evaluator", "options", "eps"], 0.25), False,
     "corrupt checkpoint (the evaluator's options are not the checkpoint's options)"),
    ((["evaluator", "sums", "count"], 1e9), False,
     "corrupt checkpoint (the evaluator counts 1000000000 rows, more than the 256 read)"),
    ((["evaluator", "n_classes"], 7, ["evaluator", "tables", "class_mass"], [0.0] * 7), False,
     "corrupt checkpoint (the evaluator has n_classes 7 and target_kind 'labels' after 256 "
     "rows; expected 10 and 'labels')"),
    ((["evaluator", "target_kind"], "soft"), False,
     "corrupt checkpoint (the evaluator has n_classes 10 and target_kind 'soft' after 256 "
     "rows; expected 10 and 'labels')"),
    ((["evaluator", "sums", "loss"], "-nan"), False,
     "corrupt checkpoint (invalid Evaluator state: sums.loss must hold numbers"),
], ids=itertools.count())
def test_hand_edited_checkpoint(data, monkeypatch, edit, complete, message):
    """Every field of a checkpoint is checked for its type and against the run: a damaged
    one raises EvalFileError (no AttributeError, no "complete": "no" taken as complete)."""
    tmp_path, _, _ = data
    state = tmp_path / "state.json"
    args = (path(tmp_path, "logits.npy"), path(tmp_path, "labels.npy"))
    with monkeypatch.context() as patch:
        if not complete:
            stop_after(patch, 4)
        with contextlib.suppress(StopRun):
            evaluate_files(*args, chunk_rows=64, checkpoint=state, checkpoint_interval=0)
    _edited(state, *edit)
    with pytest.raises(EvalFileError) as info:
        evaluate_files(*args, checkpoint=state)
    assert str(info.value).startswith(f"{state}: ")
    for fragment in (message,) if isinstance(message, str) else message:
        assert fragment in str(info.value)
    assert str(info.value).endswith("delete it to start over")
