"""``linear_cross_entropy`` and ``linear_cross_entropy_loss_and_grad``: the fused linear layer
against an independent float64 reference on the explicit logits, against ``cross_entropy`` on
them, and against PyTorch's ``F.linear_cross_entropy``; chunk boundaries, buffers and errors."""

import os
import signal
import subprocess
import sys
import threading
import time
import warnings

import numpy as np
import pytest

import fastxent
from fastxent._api import linear
from fastxent._core.blas import blas_threads
from helpers import RTOL, assert_close
from reference import cross_entropy_ref

DTYPES = (np.float32, np.float64)
N_ROWS, N_FEATURES, N_CLASSES = 23, 6, 11
# chunk_rows: one row, uneven chunks, exactly N, more than N, the default.
CHUNKS = (1, 4, N_ROWS, N_ROWS + 5, None)

CLASSIC_OPTIONS = {
    "plain": {},
    "weight": {"weight": np.linspace(0.5, 2.0, N_CLASSES)},
    "sample_weight": {"sample_weight": np.linspace(0.1, 3.0, N_ROWS)},
    "ignore_index": {"ignore_index": 3},
    "label_smoothing": {"label_smoothing": 0.2},
    "all": {"weight": np.linspace(0.5, 2.0, N_CLASSES), "ignore_index": 3,
            "sample_weight": np.linspace(0.1, 3.0, N_ROWS), "label_smoothing": 0.1},
}
TERM_OPTIONS = {
    "z_loss": {"z_loss": 1e-2},
    "softcap": {"softcap": 2.5},
    "focal": {"focal_gamma": 2.0, "focal_alpha": np.linspace(0.2, 1.0, N_CLASSES)},
    "all_terms": {"z_loss": 1e-2, "softcap": 4.0, "focal_gamma": 1.5,
                  "weight": np.linspace(0.5, 2.0, N_CLASSES), "ignore_index": 3},
}


def make_case(dtype, n_rows=N_ROWS, bias=True, seed=0):
    """Hidden states, weight, bias (or None) and labels; label 3 appears (ignore_index)."""
    rng = np.random.default_rng(seed)
    hidden = rng.standard_normal((n_rows, N_FEATURES)).astype(dtype)
    weight = rng.standard_normal((N_CLASSES, N_FEATURES)).astype(dtype)
    b = rng.standard_normal(N_CLASSES).astype(dtype) if bias else None
    labels = rng.integers(0, N_CLASSES, n_rows)
    labels[::5] = 3
    return hidden, weight, b, labels


def explicit_logits(hidden, weight, bias):
    """The logits in float64 from float64 copies of the operands."""
    z = np.asarray(hidden, np.float64) @ np.asarray(weight, np.float64).T
    return z if bias is None else z + np.asarray(bias, np.float64)


def reference(hidden, linear_weight, bias, target, **options):
    """Loss and the three gradients, float64, from the explicit logits."""
    loss, grad = cross_entropy_ref(explicit_logits(hidden, linear_weight, bias), target,
                                   **options)
    grad = grad.reshape(-1, linear_weight.shape[0])
    h = np.asarray(hidden, np.float64).reshape(-1, linear_weight.shape[1])
    return (loss, (grad @ np.asarray(linear_weight, np.float64)).reshape(np.shape(hidden)),
            grad.T @ h, None if bias is None else grad.sum(axis=0))


def assert_all_close(got, expected, dtype):
    for name, g, e in zip(("loss", "grad_input", "grad_linear_weight", "grad_linear_bias"),
                          got, expected, strict=True):
        if e is None:
            assert g is None, name
            continue
        assert g.dtype == np.dtype(dtype), name
        # float32 GEMMs sum d (or N) products: a few ulps more than the loss itself.
        assert_close(g, e, dtype, rtol=RTOL[np.dtype(dtype)] * 10, what=name)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("chunk_rows", CHUNKS)
@pytest.mark.parametrize("reduction", ("mean", "sum", "none"))
@pytest.mark.parametrize("bias", (True, False))
def test_matches_reference_on_explicit_logits(dtype, chunk_rows, reduction, bias):
    hidden, weight, b, labels = make_case(dtype, bias=bias)
    got = fastxent.linear_cross_entropy_loss_and_grad(
        hidden, weight, labels, linear_bias=b, reduction=reduction, chunk_rows=chunk_rows)
    assert_all_close(got, reference(hidden, weight, b, labels, reduction=reduction), dtype)
    loss = fastxent.linear_cross_entropy(hidden, weight, labels, linear_bias=b,
                                         reduction=reduction, chunk_rows=chunk_rows)
    assert_close(loss, got[0], dtype, what="loss alone")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", CLASSIC_OPTIONS)
@pytest.mark.parametrize("reduction", ("mean", "none"))
def test_classic_options_match_reference(dtype, name, reduction):
    hidden, weight, b, labels = make_case(dtype)
    options = CLASSIC_OPTIONS[name]
    got = fastxent.linear_cross_entropy_loss_and_grad(
        hidden, weight, labels, linear_bias=b, reduction=reduction, chunk_rows=4, **options)
    assert_all_close(got, reference(hidden, weight, b, labels, reduction=reduction, **options),
                     dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", TERM_OPTIONS)
@pytest.mark.parametrize("reduction", ("mean", "sum", "none"))
def test_loss_terms_match_cross_entropy_on_logits(dtype, name, reduction):
    """z-loss, soft-capping and focal terms: the fused call equals cross_entropy (itself
    tested against formulas) on the float64 logits."""
    hidden, weight, b, labels = make_case(dtype)
    options = TERM_OPTIONS[name]
    loss, grad = fastxent.cross_entropy_loss_and_grad(
        explicit_logits(hidden, weight, b), labels, reduction=reduction, **options)
    h64, w64 = hidden.astype(np.float64), weight.astype(np.float64)
    expected = (loss, grad @ w64, grad.T @ h64, grad.sum(axis=0))
    got = fastxent.linear_cross_entropy_loss_and_grad(
        hidden, weight, labels, linear_bias=b, reduction=reduction, chunk_rows=5, **options)
    assert_all_close(got, expected, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_soft_targets(dtype):
    hidden, weight, b, _ = make_case(dtype)
    rng = np.random.default_rng(1)
    soft = rng.uniform(size=(N_ROWS, N_CLASSES))
    soft /= soft.sum(axis=1, keepdims=True)
    got = fastxent.linear_cross_entropy_loss_and_grad(hidden, weight, soft.astype(dtype),
                                                      linear_bias=b, chunk_rows=3)
    assert_all_close(got, reference(hidden, weight, b, soft.astype(dtype)), dtype)


def test_validate_false_takes_soft_targets_outside_the_unit_interval():
    """As cross_entropy: validate=True refuses soft targets outside [0, 1]; validate=False
    computes the formula with them."""
    hidden, weight, b, _ = make_case(np.float64)
    soft = np.random.default_rng(2).standard_normal((N_ROWS, N_CLASSES))
    with pytest.raises(ValueError, match=r"target must lie in \[0, 1\]"):
        fastxent.linear_cross_entropy(hidden, weight, soft, linear_bias=b)
    got = fastxent.linear_cross_entropy_loss_and_grad(hidden, weight, soft, linear_bias=b,
                                                      validate=False, chunk_rows=5)
    assert_all_close(got, reference(hidden, weight, b, soft), np.float64)


@pytest.mark.parametrize("dtype", DTYPES)
def test_one_row_input(dtype):
    hidden, weight, b, labels = make_case(dtype)
    got = fastxent.linear_cross_entropy_loss_and_grad(hidden[2], weight, labels[2],
                                                      linear_bias=b, reduction="none")
    assert got[0].shape == () and got[1].shape == (N_FEATURES,)
    assert_all_close(got, reference(hidden[2], weight, b, labels[2], reduction="none"), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", ("mean", "sum", "none"))
def test_empty_input(dtype, reduction):
    _, weight, b, _ = make_case(dtype)
    hidden = np.empty((0, N_FEATURES), dtype)
    loss, gi, gw, gb = fastxent.linear_cross_entropy_loss_and_grad(
        hidden, weight, np.empty(0, np.int64), linear_bias=b, reduction=reduction)
    expected = {"mean": np.nan, "sum": 0.0}.get(reduction)
    if reduction == "none":
        assert loss.shape == (0,)
    else:
        np.testing.assert_equal(float(loss), expected)
    assert gi.shape == (0, N_FEATURES)
    assert not gw.any() and not gb.any()


@pytest.mark.parametrize("dtype", DTYPES)
def test_all_rows_ignored(dtype):
    hidden, weight, b, _ = make_case(dtype)
    labels = np.full(N_ROWS, -100)
    loss, gi, gw, gb = fastxent.linear_cross_entropy_loss_and_grad(
        hidden, weight, labels, linear_bias=b, ignore_index=-100, chunk_rows=4)
    assert np.isnan(loss)
    assert not gi.any() and not gw.any() and not gb.any()


def test_zero_features():
    """d = 0: the logits are the bias alone."""
    _, _, b, labels = make_case(np.float64)
    hidden, weight = np.empty((N_ROWS, 0)), np.empty((N_CLASSES, 0))
    loss, gi, gw, gb = fastxent.linear_cross_entropy_loss_and_grad(hidden, weight, labels,
                                                                   linear_bias=b)
    expected_loss, grad = cross_entropy_ref(np.broadcast_to(b, (N_ROWS, N_CLASSES)), labels)
    assert_close(loss, expected_loss, np.float64)
    assert_close(gb, grad.sum(axis=0), np.float64)
    assert gi.shape == (N_ROWS, 0) and gw.shape == (N_CLASSES, 0)


@pytest.mark.parametrize("label_dtype", (np.uint8, np.int16, np.int32, np.uint64))
def test_label_dtypes(label_dtype):
    hidden, weight, b, labels = make_case(np.float64)
    got = fastxent.linear_cross_entropy(hidden, weight, labels.astype(label_dtype),
                                        linear_bias=b)
    assert_close(got, reference(hidden, weight, b, labels)[0], np.float64)


@pytest.mark.parametrize("dtype", DTYPES)
def test_fortran_and_read_only_operands(dtype):
    """A Fortran-ordered weight (the transpose of a (d, V) matrix) and read-only inputs are
    used as they are."""
    hidden, weight, b, labels = make_case(dtype)
    weight_f = np.asfortranarray(weight)
    for array in (hidden, weight_f, b):
        array.flags.writeable = False
    assert linear._layer_array(weight_f, "linear_weight", np.dtype(dtype),
                               np.dtype(dtype)) is weight_f
    got = fastxent.linear_cross_entropy_loss_and_grad(hidden, weight_f, labels, linear_bias=b,
                                                      chunk_rows=7)
    assert_all_close(got, reference(hidden, weight, b, labels), dtype)


def test_memory_mapped_inputs(tmp_path):
    hidden, weight, b, labels = make_case(np.float32)
    np.save(tmp_path / "h.npy", hidden)
    np.save(tmp_path / "w.npy", weight)
    got = fastxent.linear_cross_entropy_loss_and_grad(
        np.load(tmp_path / "h.npy", mmap_mode="r"), np.load(tmp_path / "w.npy", mmap_mode="r"),
        labels, linear_bias=b, chunk_rows=6)
    assert_all_close(got, reference(hidden, weight, b, labels), np.float32)


@pytest.mark.parametrize("dtype", DTYPES)
def test_out_buffers_are_filled_and_returned(dtype):
    hidden, weight, b, labels = make_case(dtype)
    out = (np.full_like(hidden, 7), np.full_like(weight, 7), np.full_like(b, 7))
    got = fastxent.linear_cross_entropy_loss_and_grad(hidden, weight, labels, linear_bias=b,
                                                      chunk_rows=4, out=out)
    for given, returned in zip(out, got[1:], strict=True):
        assert returned is given
    assert_all_close(got, reference(hidden, weight, b, labels), dtype)
    partly = fastxent.linear_cross_entropy_loss_and_grad(
        hidden, weight, labels, linear_bias=b, out=(None, np.empty_like(weight), None))
    assert_all_close(partly, reference(hidden, weight, b, labels), dtype)


@pytest.mark.parametrize("wrt", ("input", ("linear_weight",), ["linear_bias", "input"], ()))
def test_wrt_computes_only_the_gradients_named(wrt):
    hidden, weight, b, labels = make_case(np.float32)
    full = fastxent.linear_cross_entropy_loss_and_grad(hidden, weight, labels, linear_bias=b,
                                                       chunk_rows=4)
    got = fastxent.linear_cross_entropy_loss_and_grad(hidden, weight, labels, linear_bias=b,
                                                      chunk_rows=4, wrt=wrt)
    named = {wrt} if isinstance(wrt, str) else set(wrt)
    assert got[0] == full[0]
    for name, g, f in zip(linear.GRADIENTS, got[1:], full[1:], strict=True):
        if name in named:
            np.testing.assert_array_equal(g, f, err_msg=name)
        else:
            assert g is None, name


@pytest.mark.parametrize(("wrt", "out", "error", "match"), [
    ("weight", None, ValueError, "wrt names 'weight'"),
    (3, None, TypeError, "wrt must be a name or a sequence"),
    ("input", (None, np.zeros((N_CLASSES, N_FEATURES)), None), ValueError,
     r"out\[1\] \(grad_linear_weight\) is given but wrt does not name 'linear_weight'"),
])
def test_bad_wrt(wrt, out, error, match):
    hidden, weight, b, labels = make_case(np.float64)
    with pytest.raises(error, match=match):
        fastxent.linear_cross_entropy_loss_and_grad(hidden, weight, labels, linear_bias=b,
                                                    wrt=wrt, out=out)


def test_grad_input_in_place():
    """out[0] may be the input itself: each chunk's rows are used before they are replaced."""
    hidden, weight, b, labels = make_case(np.float64)
    expected = reference(hidden, weight, b, labels)
    buffer = hidden.copy()
    got = fastxent.linear_cross_entropy_loss_and_grad(buffer, weight, labels, linear_bias=b,
                                                      chunk_rows=4, out=(buffer, None, None))
    assert got[1] is buffer
    assert_all_close(got, expected, np.float64)


def _bad_out(case, hidden, weight, b):
    """(hidden, weight, out, message) for an out buffer that is wrong or overlaps something
    read; `hidden` and `weight` may be views into a buffer that the out also uses."""
    if case == "wrong shape":
        return hidden, weight, (hidden[1:].copy(), None, None), "must have shape"
    if case == "overlaps input":
        big = np.concatenate([hidden, hidden])
        return big[:N_ROWS], weight, (big[1:N_ROWS + 1], None, None), "overlaps the input"
    if case == "is the weight":
        return hidden, weight, (None, weight, None), "must not overlap linear_weight"
    if case == "is the bias":
        return hidden, weight, (None, None, b), "must not overlap linear_bias"
    if case == "gradients overlap":
        both = np.zeros(weight.size + N_CLASSES)
        grad_weight = both[:weight.size].reshape(weight.shape)
        return hidden, weight, (None, grad_weight, both[weight.size - 1:-1]), (
            "must not overlap grad_linear_weight")
    assert case == "input grad over weight"
    big = np.concatenate([weight.reshape(-1), np.zeros(hidden.size)])
    shared_weight = big[:weight.size].reshape(weight.shape)
    grad_input = big[weight.size - 1:weight.size - 1 + hidden.size].reshape(hidden.shape)
    return hidden, shared_weight, (grad_input, None, None), "must not overlap linear_weight"


@pytest.mark.parametrize("case", ("wrong shape", "overlaps input", "is the weight",
                                  "is the bias", "gradients overlap", "input grad over weight"))
def test_bad_out_is_refused_before_anything_is_written(case):
    hidden, weight, b, labels = make_case(np.float64)
    hidden, weight, out, message = _bad_out(case, hidden, weight, b)
    before = [a.copy() for a in (hidden, weight, b)]
    snapshot = [None if o is None else o.copy() for o in out]
    with pytest.raises(ValueError, match=message):
        fastxent.linear_cross_entropy_loss_and_grad(hidden, weight, labels, linear_bias=b,
                                                    out=out)
    for array, saved in zip((hidden, weight, b), before, strict=True):
        np.testing.assert_array_equal(array, saved)
    for o, saved in zip(out, snapshot, strict=True):
        if o is not None:
            np.testing.assert_array_equal(o, saved)


def test_out_overlapping_int64_labels_is_refused():
    hidden, weight, b, labels = make_case(np.float64)
    memory = np.zeros(hidden.size + N_ROWS)
    labels_view = memory[:N_ROWS].view(np.int64)
    labels_view[:] = labels
    grad_input = memory[N_ROWS - 1:N_ROWS - 1 + hidden.size].reshape(hidden.shape)
    with pytest.raises(ValueError, match="target"):
        fastxent.linear_cross_entropy_loss_and_grad(hidden, weight, labels_view, linear_bias=b,
                                                    out=(grad_input, None, None))


@pytest.mark.parametrize(("kwargs", "error", "match"), [
    ({"out": [None, None, None]}, TypeError, "tuple"),
    ({"out": (None, None)}, TypeError, "tuple"),
    ({"out": (None, None, np.zeros(N_CLASSES)), "linear_bias": None}, ValueError,
     "without linear_bias"),
    ({"chunk_rows": 0}, ValueError, "chunk_rows"),
    ({"chunk_rows": 2.5}, TypeError, "chunk_rows"),
    ({"chunk_rows": True}, TypeError, "chunk_rows"),
    ({"linear_bias": np.zeros(N_CLASSES + 1)}, ValueError, "linear_bias must have shape"),
    ({"linear_bias": np.zeros(N_CLASSES, np.float32)}, TypeError, "linear_bias is float32"),
    ({"weight": np.ones(N_CLASSES + 1)}, ValueError, "weight must have shape"),
    ({"sample_weight": np.ones(N_ROWS + 1)}, ValueError, "sample_weight"),
    ({"label_smoothing": np.float64(np.nan)}, ValueError, "label_smoothing"),
    ({"softcap": np.float32(np.nan)}, ValueError, "softcap"),
    ({"reduction": "avg"}, ValueError, "reduction"),
    ({"n_threads": 0}, ValueError, "n_threads"),
])
def test_bad_options(kwargs, error, match):
    hidden, weight, b, labels = make_case(np.float64)
    kwargs = {"linear_bias": b, **kwargs}
    with pytest.raises(error, match=match):
        fastxent.linear_cross_entropy_loss_and_grad(hidden, weight, labels, **kwargs)


def test_bad_operands():
    hidden, weight, b, labels = make_case(np.float64)
    cases = [
        ((hidden, weight[:, 1:], labels), ValueError, r"linear_weight must have shape \(V, 6\)"),
        ((hidden, weight[0], labels), ValueError, "linear_weight must have shape"),
        ((hidden[None], weight, labels), ValueError, "input must have shape"),
        ((hidden, weight.astype(np.float32), labels), TypeError,
         "linear_weight is float32 but input is float64"),
        ((hidden.astype(np.float32), weight, labels), TypeError,
         "linear_weight is float64 but input is float32"),
        ((hidden, weight[:0], labels), ValueError, "no classes"),
        ((hidden, weight, labels[1:]), ValueError, "integer class labels must have shape"),
        ((hidden, weight, labels + N_CLASSES), ValueError, "is not a class index"),
        ((hidden, weight.astype(complex), labels), TypeError,
         "linear_weight must be float32 or float64"),
        ((hidden, weight.astype(np.int64), labels), TypeError,
         r"linear_weight must be float32 or float64 \(the GEMMs. dtype\), got int64"),
        ((hidden, weight.astype(np.float16), labels), TypeError,
         r"linear_weight must be float32 or float64 \(the GEMMs. dtype\), got float16"),
        ((hidden.astype(np.float16), weight.astype(np.float32), labels), TypeError,
         r"linear_weight is float32 but input is float16 \(computed in float64\)"),
        ((hidden.astype(np.int32), weight, labels), None, None),
    ]
    for args, error, match in cases:
        if error is None:               # integer hidden states are read as float64
            assert np.isfinite(fastxent.linear_cross_entropy(*args))
            continue
        with pytest.raises(error, match=match):
            fastxent.linear_cross_entropy(*args)


def test_failed_allocation_writes_no_output(monkeypatch):
    """An error while the chunk buffer is made leaves every out buffer as it was."""
    hidden, weight, b, labels = make_case(np.float64)
    out = (np.full_like(hidden, 7), np.full_like(weight, 7), np.full_like(b, 7))

    def no_memory(self):
        raise MemoryError("no chunk")

    monkeypatch.setattr(linear.LinearProblem, "chunk_buffer", no_memory)
    with pytest.raises(MemoryError):
        fastxent.linear_cross_entropy_loss_and_grad(hidden, weight, labels, linear_bias=b,
                                                    out=out)
    assert all((o == 7).all() for o in out)


def test_chunk_rows_rule():
    """At least CHUNK_BYTES_MIN of logits or half the cache, within the row bounds."""
    mib = 2**20
    assert linear.chunk_rows_for(32000, 4, cache_bytes=32 * mib) == 512
    assert linear.chunk_rows_for(128000, 4, cache_bytes=32 * mib) == 131
    assert linear.chunk_rows_for(128000, 4, cache_bytes=512 * mib) == 512
    assert linear.chunk_rows_for(10**7, 8, cache_bytes=mib) == linear.CHUNK_ROWS_MIN
    assert linear.chunk_rows_for(10, 4, cache_bytes=mib) == linear.CHUNK_ROWS_MAX
    assert linear.last_level_cache_bytes() > 0


# In a fresh process: threadpoolctl lets only one Python thread (the first to set a limit,
# while it lives) change OpenBLAS's thread count, and earlier tests may have been that thread.
_BLAS_LIMITS = """
import threading
import numpy as np
import threadpoolctl
import fastxent
from fastxent._core.blas import _gemm_routines, blas_threads

_gemm_routines()        # SciPy's BLAS is loaded by the first fused call: load it before counting

def counts():
    return [lib["num_threads"] for lib in threadpoolctl.threadpool_info()
            if lib["user_api"] == "blas"]

before = counts()
assert before and set(before) != {1}, before
with blas_threads(1):
    assert set(counts()) == {1}, counts()
assert counts() == before, counts()

# A call in another thread while this one is inside a limit does not wait for it, runs
# under that limit, and the last one out restores BLAS's thread count.
rng = np.random.default_rng(0)
seen = []

def other_call():
    fastxent.linear_cross_entropy(rng.standard_normal((9, 4)), rng.standard_normal((5, 4)),
                                  np.arange(9) % 5, n_threads=2)
    seen.append(counts())

with blas_threads(1):
    caller = threading.Thread(target=other_call)
    caller.start()
    caller.join(10)
    assert not caller.is_alive(), "the call waited for the other context"
    assert seen == [[1] * len(before)], seen
assert counts() == before, counts()
"""


def test_blas_limits_apply_overlap_and_restore():
    run = subprocess.run([sys.executable, "-c", _BLAS_LIMITS], capture_output=True, text=True,
                         timeout=60, env={**os.environ, "OMP_NUM_THREADS": "2",
                                          "OPENBLAS_NUM_THREADS": "2"})
    assert run.returncode == 0, run.stderr


def test_blas_thread_count_does_not_depend_on_openmp(monkeypatch):
    """n_threads sets BLAS's threads even in a build without OpenMP (where the kernels run on
    one thread); negative counts go back from the usable cores."""
    from fastxent._core import threads
    monkeypatch.setattr(threads, "_usable_cpus", lambda: 8)
    monkeypatch.setattr(threads.kernels, "openmp_enabled", lambda: False)
    assert [threads.blas_thread_count(n) for n in (None, 3, -1, -2, -20)] == [None, 3, 8, 7, 1]
    with pytest.raises(ValueError, match="n_threads=0"):
        threads.blas_thread_count(0)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_child_forked_inside_a_limit_runs():
    """A child forked while another thread is inside a BLAS limit does not deadlock."""
    inside, release = threading.Event(), threading.Event()

    def hold():
        with blas_threads(1):
            inside.set()
            release.wait(10)

    holder = threading.Thread(target=hold)
    holder.start()
    assert inside.wait(10)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)    # fork with threads
            pid = os.fork()
        if pid == 0:                                                # the child
            hidden, weight, b, labels = make_case(np.float64)
            fastxent.linear_cross_entropy(hidden, weight, labels, n_threads=1)
            os._exit(0)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            time.sleep(0.05)
        else:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            pytest.fail("the forked child hung")
        assert os.waitstatus_to_exitcode(status) == 0
    finally:
        release.set()
        holder.join(10)


@pytest.mark.parametrize("dtype", DTYPES)
def test_thread_counts_agree(dtype):
    hidden, weight, b, labels = make_case(dtype, n_rows=400)
    one = fastxent.linear_cross_entropy_loss_and_grad(hidden, weight, labels, linear_bias=b,
                                                      n_threads=1, chunk_rows=64)
    two = fastxent.linear_cross_entropy_loss_and_grad(hidden, weight, labels, linear_bias=b,
                                                      n_threads=2, chunk_rows=64)
    assert_all_close(one, two, dtype)


class TestAgainstPyTorch:
    """PyTorch's own ``F.linear_cross_entropy`` (its reference path)."""

    torch = pytest.importorskip("torch")

    @pytest.mark.parametrize("dtype", DTYPES)
    @pytest.mark.parametrize("reduction", ("mean", "sum", "none"))
    @pytest.mark.parametrize("name", ("plain", "weight", "ignore_index", "label_smoothing"))
    def test_values_and_gradients(self, dtype, reduction, name):
        torch = self.torch
        hidden, weight, b, labels = make_case(dtype)
        options = {key: value for key, value in CLASSIC_OPTIONS[name].items()}
        tensors = [torch.tensor(a, requires_grad=True) for a in (hidden, weight, b)]
        torch_options = dict(options)
        if "weight" in options:
            torch_options["weight"] = torch.tensor(options["weight"], dtype=tensors[0].dtype)
        loss = torch.nn.functional.linear_cross_entropy(
            tensors[0], tensors[1], torch.tensor(labels), linear_bias=tensors[2],
            reduction=reduction, **torch_options)
        loss.sum().backward()
        expected = (loss.detach().numpy(), *(t.grad.numpy() for t in tensors))
        got = fastxent.linear_cross_entropy_loss_and_grad(
            hidden, weight, labels, linear_bias=b, reduction=reduction, chunk_rows=4,
            **options)
        rtol = RTOL[np.dtype(dtype)] * 10
        for g, e in zip(got, expected, strict=True):
            assert_close(g, e, dtype, rtol=rtol)
