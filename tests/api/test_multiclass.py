"""Multiclass cross-entropy against the float64 NumPy reference."""

import itertools
import zlib

import numpy as np
import pytest

import fastxent
from helpers import (
    BIG_ROWS,
    MULTICLASS,
    REDUCTIONS,
    assert_close,
    call,
    check_result_types,
    compute_dtype,
    labels,
    logits,
    probabilities,
    soft_targets,
)
from reference import cross_entropy_ref, fd_grad, log_softmax

DTYPES = ("float32", "float64", "int64", "float16")
TARGETS = ("int64", "uint8", "int32", "uint64", "soft")


def _make(rng, shape, dtype, target, from_logits, axis=-1):
    n_classes = shape[axis]
    rows_shape = tuple(np.delete(np.array(shape), axis % len(shape)))
    x = (logits(rng, shape, dtype) if from_logits
         else probabilities(rng, shape, dtype, axis=axis))
    if target == "soft":
        t = soft_targets(rng, shape, compute_dtype(dtype), axis=axis)
    else:
        t = labels(rng, rows_shape, n_classes, target)
    return x, t


@pytest.mark.parametrize("n_threads", [1, 2])
@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("from_logits", [True, False])
@pytest.mark.parametrize("func", ["loss", "grad", "loss_and_grad"])
def test_against_reference(func, from_logits, dtype, target, n_threads):
    """Every function x dtype x target form x n_threads, each with every reduction and with
    and without `out`."""
    rng = np.random.default_rng(zlib.crc32(repr((func, from_logits, dtype, target))
                                           .encode()))
    big = n_threads == 2 and target in ("int32", "soft")   # two threads really run
    n_rows = BIG_ROWS if big else 37
    x, t = _make(rng, (n_rows, 5), dtype, target, from_logits)
    cdt = compute_dtype(dtype)
    for reduction, use_out in itertools.product(REDUCTIONS, (False, True)):
        if func == "loss" and use_out:
            continue
        out = np.full(x.shape, -7.25, dtype=cdt) if use_out else None
        loss, grad = call(MULTICLASS, func, x, t, out=out, from_logits=from_logits,
                          reduction=reduction, n_threads=n_threads)
        check_result_types(loss, grad, x.shape, (n_rows,), reduction, cdt, out)
        ref_loss, ref_grad = cross_entropy_ref(x, t, from_logits=from_logits,
                                               reduction=reduction)
        if loss is not None:
            assert_close(loss, ref_loss, cdt, what=f"loss {reduction} out={use_out}")
        if grad is not None:
            assert_close(grad, ref_grad, cdt, what=f"grad {reduction} out={use_out}")


OPTION_SETS = {
    "plain": {},
    "weight": {"weight": [0.5, 2.0, 1.0, 3.0]},
    "sample_weight": {"sample_weight": True},
    "both_weights": {"weight": [0.5, 2.0, 1.0, 3.0], "sample_weight": True},
    "ignore_-100": {"ignore_index": -100},
    "ignore_class": {"ignore_index": 1},
    "smoothing": {"label_smoothing": 0.25},
    "smoothing_1": {"label_smoothing": 1.0},
    "weight_ignore_smoothing": {"weight": [0.5, 2.0, 1.0, 3.0], "ignore_index": -100,
                                "label_smoothing": 0.1},
    "all": {"weight": [0.5, 2.0, 1.0, 3.0], "sample_weight": True, "ignore_index": 2,
            "label_smoothing": 0.3},
    "eps": {"eps": 0.03},
}

# (input shape, axis): the class axis (4 classes) anywhere, rows of any rank.
LAYOUTS = [((7, 4), -1), ((3, 4, 2, 5), 1), ((4, 6), 0), ((2, 3, 4), -1), ((4,), 0),
           ((2, 4, 3), -2)]


def _option_cases():
    for (name, opts), layout, from_logits, target in itertools.product(
            OPTION_SETS.items(), LAYOUTS, (True, False), ("labels", "soft")):
        if target == "soft" and "ignore_index" in opts:
            continue
        if layout[0] == (4,) and "sample_weight" in opts:
            continue                         # see test_sample_weight_single_row
        yield pytest.param(opts, layout, from_logits, target,
                           id=f"{name}-{layout[0]}ax{layout[1]}-{from_logits}-{target}")


def _with_options(rng, opts, x, t, axis, target):
    """Materialise the option set for this input: sample weights, ignored labels."""
    kwargs = dict(opts)
    rows_shape = np.moveaxis(x, axis, -1).shape[:-1]
    if kwargs.get("sample_weight") is True:
        kwargs["sample_weight"] = rng.uniform(0.1, 2.0, size=rows_shape)
    if target == "labels" and "ignore_index" in kwargs and t.size:
        ign = kwargs["ignore_index"]
        t = t.copy()
        flat = t.reshape(-1)
        flat[:: 3] = ign                     # a third of the rows ignored, never all
        if ign == -100 or flat.size == 1:
            flat[-1] = 0 if ign != 0 else 1
    return kwargs, t


@pytest.mark.parametrize("opts, layout, from_logits, target", list(_option_cases()))
def test_options_against_reference(opts, layout, from_logits, target):
    """weight, sample_weight, ignore_index, label_smoothing, eps and axis, in combination,
    for every reduction, in float32 and float64."""
    shape, axis = layout
    rng = np.random.default_rng(zlib.crc32(repr((opts, layout, from_logits)).encode()))
    n_classes = shape[axis]
    rows_shape = np.moveaxis(np.empty(shape), axis, -1).shape[:-1]
    for dtype, reduction in itertools.product(("float32", "float64"), REDUCTIONS):
        x = (logits(rng, shape, dtype) if from_logits
             else probabilities(rng, shape, dtype, axis=axis))
        if opts.get("eps") and not from_logits:
            x.reshape(-1)[::5] = 0.001             # below eps: clipped
        t = (labels(rng, rows_shape, n_classes) if target == "labels"
             else soft_targets(rng, shape, dtype, axis=axis))
        kwargs, t = _with_options(rng, opts, x, t, axis, target)
        loss, grad = fastxent.cross_entropy_loss_and_grad(
            x, t, from_logits=from_logits, reduction=reduction, axis=axis, **kwargs)
        loss_only = fastxent.cross_entropy(x, t, from_logits=from_logits,
                                           reduction=reduction, axis=axis, **kwargs)
        check_result_types(loss, grad, x.shape, rows_shape, reduction, dtype)
        ref_loss, ref_grad = cross_entropy_ref(x, t, from_logits=from_logits,
                                               reduction=reduction, axis=axis, **kwargs)
        what = f"{dtype} {reduction}"
        assert_close(loss, ref_loss, dtype, what="loss " + what)
        assert_close(loss_only, ref_loss, dtype, what="loss only " + what)
        assert_close(grad, ref_grad, dtype, what="grad " + what)


def test_sample_weight_single_row():
    """A 1-D input is one row: its sample_weight is 0-d (the rows' shape is ())."""
    x = np.array([1.0, 2.0, 0.5])
    loss = fastxent.cross_entropy(x, np.array(1), sample_weight=np.array(2.5), axis=0,
                                  reduction="none")
    ref, _ = cross_entropy_ref(x, np.array(1), sample_weight=2.5, axis=0, reduction="none")
    assert np.shape(loss) == ()
    np.testing.assert_allclose(loss, ref, rtol=1e-14)


def test_single_class_logits_give_zero():
    """C = 1: log-softmax is 0, so the loss and the gradient are exactly 0."""
    x = np.array([[3.0], [-2.0], [0.0]])
    loss, grad = fastxent.cross_entropy_loss_and_grad(x, np.zeros(3, np.int8),
                                                      reduction="none")
    np.testing.assert_array_equal(loss, [0.0, 0.0, 0.0])
    np.testing.assert_array_equal(grad, np.zeros((3, 1)))


def test_rows_not_renormalised():
    """Probability rows are not renormalised: [0.2, 0.2] with label 0 gives -log 0.2."""
    loss = fastxent.cross_entropy(np.array([[0.2, 0.2]]), np.array([0]), from_logits=False)
    assert loss == pytest.approx(-np.log(0.2), rel=1e-15)


def test_default_eps_is_dtype_eps():
    """eps=None clips at np.finfo(dtype).eps: p=0 at the label gives -log(eps)."""
    for dtype in (np.float32, np.float64):
        x = np.array([[0.0, 1.0]], dtype=dtype)
        loss = fastxent.cross_entropy(x, np.array([0]), from_logits=False)
        assert float(loss) == pytest.approx(-np.log(float(np.finfo(dtype).eps)), rel=1e-6)
        grad = fastxent.cross_entropy_grad(x, np.array([0]), from_logits=False)
        assert float(grad[0, 0]) == pytest.approx(-1.0 / float(np.finfo(dtype).eps), rel=1e-6)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_eps_zero_means_no_clipping(dtype):
    """eps=0 is allowed: p = 0 at the label gives +inf, other probabilities are exact."""
    x = np.array([[0.0, 1.0], [0.25, 0.75]], dtype=dtype)
    loss = fastxent.cross_entropy(x, np.array([0, 0]), from_logits=False, eps=0.0,
                                  reduction="none")
    assert loss[0] == np.inf
    assert float(loss[1]) == pytest.approx(np.log(4.0), rel=1e-7)


def test_noncontiguous_and_fortran_input():
    """A strided or Fortran-ordered input gives the same numbers as its C-ordered copy."""
    rng = np.random.default_rng(5)
    base = logits(rng, (12, 10))
    t = labels(rng, (12,), 5)
    strided = base[:, ::2]
    fortran = np.asfortranarray(strided)
    expected = fastxent.cross_entropy_loss_and_grad(np.ascontiguousarray(strided), t,
                                                    reduction="none")
    for x in (strided, fortran):
        loss, grad = fastxent.cross_entropy_loss_and_grad(x, t, reduction="none")
        np.testing.assert_array_equal(loss, expected[0])
        np.testing.assert_array_equal(grad, expected[1])


def test_list_inputs():
    """Python lists are accepted (float64 computation)."""
    loss = fastxent.cross_entropy([[0.4, 0.4, 0.2]], [1], from_logits=False)
    assert loss.dtype == np.float64
    assert float(loss) == pytest.approx(0.916290731874155, rel=1e-14)


def test_ignored_label_still_in_other_rows_softmax():
    """ignore_index equal to a real class: rows with that label vanish, the class stays in
    every other row's softmax denominator."""
    z = np.array([[1.0, 2.0, 3.0], [0.5, -1.0, 2.0]])
    y = np.array([1, 0])
    loss, grad = fastxent.cross_entropy_loss_and_grad(z, y, ignore_index=1, reduction="none")
    np.testing.assert_allclose(loss, [0.0, -(0.5 - np.log(np.exp(z[1]).sum()))], rtol=1e-14)
    np.testing.assert_array_equal(grad[0], [0.0, 0.0, 0.0])
    assert grad[1, 1] > 0


# ---- gradients against 4th-order central finite differences (float64) ----------------------

FD_OPTIONS = [
    {},
    {"weight": np.array([0.5, 2.0, 1.0, 3.0])},
    {"sample_weight": np.array([0.3, 1.5, 2.0])},
    {"label_smoothing": 0.2},
    {"weight": np.array([0.5, 2.0, 1.0, 3.0]), "label_smoothing": 0.2,
     "sample_weight": np.array([0.3, 1.5, 2.0])},
    {"ignore_index": 2, "weight": np.array([0.5, 2.0, 1.0, 3.0])},
]


@pytest.mark.parametrize("opts, target", [
    pytest.param(o, t, id=f"{'-'.join(o) or 'plain'}-{t}")
    for o in FD_OPTIONS for t in ("labels", "soft") if not (t == "soft" and "ignore_index" in o)])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("from_logits", [True, False])
def test_gradient_finite_differences(opts, reduction, target, from_logits):
    """grad == 4th-order central differences of the (reduced, or summed) loss."""
    rng = np.random.default_rng(11)
    if from_logits:
        x, h = logits(rng, (3, 4), scale=2.0), 1e-3
    else:
        x, h = rng.uniform(0.05, 0.95, size=(3, 4)), 1e-4
    t = np.array([1, 2, 0]) if target == "labels" else soft_targets(rng, (3, 4))

    def f(v):
        val = fastxent.cross_entropy(v, t, from_logits=from_logits, reduction=reduction,
                                     **opts)
        return np.sum(val)

    grad = fastxent.cross_entropy_grad(x, t, from_logits=from_logits, reduction=reduction,
                                       **opts)
    expected = fd_grad(f, x, h)
    np.testing.assert_allclose(grad, expected, rtol=1e-7, atol=1e-8 * np.abs(expected).max())
    ref_grad = cross_entropy_ref(x, t, from_logits=from_logits, reduction=reduction, **opts)[1]
    np.testing.assert_allclose(ref_grad, expected, rtol=1e-7,
                               atol=1e-8 * np.abs(expected).max())


def test_gradient_finite_differences_axis1():
    """Finite differences on a (N, C, d1, d2) layout with axis=1."""
    rng = np.random.default_rng(2)
    x = logits(rng, (2, 3, 2, 2), scale=2.0)
    t = labels(rng, (2, 2, 2), 3)
    kw = dict(axis=1, weight=np.array([1.0, 2.0, 0.5]), label_smoothing=0.1)
    grad = fastxent.cross_entropy_grad(x, t, **kw)
    expected = fd_grad(lambda v: fastxent.cross_entropy(v, t, **kw), x, 1e-3)
    np.testing.assert_allclose(grad, expected, rtol=1e-7, atol=1e-9)


# ---- property-based: random layouts and options ---------------------------------------------

def test_random_layouts_property():
    """Random shapes, class axes, dtypes and options agree with the reference (hypothesis)."""
    hypothesis = pytest.importorskip("hypothesis")
    st = hypothesis.strategies

    @hypothesis.settings(max_examples=60, deadline=None, database=None,
                         suppress_health_check=list(hypothesis.HealthCheck))
    @hypothesis.given(shape=st.lists(st.integers(1, 5), min_size=1, max_size=4),
                      axis_pick=st.integers(0, 3), seed=st.integers(0, 2**32 - 1),
                      dtype=st.sampled_from(["float32", "float64"]),
                      soft=st.booleans(), from_logits=st.booleans(),
                      smoothing=st.sampled_from([0.0, 0.3]),
                      use_weight=st.booleans(), use_sample_weight=st.booleans(),
                      reduction=st.sampled_from(REDUCTIONS))
    def check(shape, axis_pick, seed, dtype, soft, from_logits, smoothing, use_weight,
              use_sample_weight, reduction):
        shape = tuple(shape)
        axis = axis_pick % len(shape) - (len(shape) if axis_pick % 2 else 0)
        rng = np.random.default_rng(seed)
        n_classes = shape[axis]
        rows = np.moveaxis(np.empty(shape), axis, -1).shape[:-1]
        x = (logits(rng, shape, dtype) if from_logits
             else probabilities(rng, shape, dtype, axis=axis))
        t = (soft_targets(rng, shape, dtype, axis=axis) if soft
             else labels(rng, rows, n_classes, np.int32))
        kw = {"label_smoothing": smoothing, "reduction": reduction, "axis": axis,
              "from_logits": from_logits}
        if use_weight:
            kw["weight"] = rng.uniform(0.5, 2, size=n_classes)
        if use_sample_weight and rows:
            kw["sample_weight"] = rng.uniform(0.5, 2, size=rows)
        loss, grad = fastxent.cross_entropy_loss_and_grad(x, t, **kw)
        ref_loss, ref_grad = cross_entropy_ref(x, t, **kw)
        assert_close(loss, ref_loss, dtype, what="loss")
        assert_close(grad, ref_grad, dtype, what="grad")

    check()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_long_rows_find_the_first_max_in_any_block(dtype):
    """Rows longer than the arg-max block (1024): the max in a late block, ties across and
    within blocks, -inf and NaN placed in later blocks; loss, gradient, softmax and
    evaluate's accuracy match the float64 reference (first arg-max, like np.argmax)."""
    rng = np.random.default_rng(7)
    C = 3000
    x = rng.standard_normal((8, C)).astype(dtype)
    x[0, 2500] = 9                       # max in the third block
    x[1, [1500, 2900]] = 9               # a tie across blocks: the first wins
    x[2, [2100, 2101]] = 9               # a tie within a block
    x[3, :] = -np.inf
    x[3, 2999] = 1                       # everything else -inf
    x[4, 1023] = 9                       # the last element of the first block
    x[5, 1024] = 9                       # the first element of the second block
    x[6, :] = -np.inf                    # all -inf: NaN
    x[7, 2000] = np.nan                  # NaN in a late block
    y = np.array([2500, 1500, 2101, 2999, 0, 1024, 3, 5])
    loss, grad = fastxent.cross_entropy_loss_and_grad(x, y, reduction="none")
    ref_loss, ref_grad = cross_entropy_ref(x[:6], y[:6], reduction="none")
    rtol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(loss[:6], ref_loss, rtol=rtol, atol=1e-7)
    np.testing.assert_allclose(grad[:6], ref_grad, rtol=rtol, atol=1e-7)
    assert np.isnan(loss[6:]).all() and np.isnan(grad[6:]).all()
    sm = fastxent.softmax(x[:6])
    np.testing.assert_allclose(sm, np.exp(log_softmax(x[:6].astype(np.float64))), rtol=rtol,
                               atol=1e-7)
    assert fastxent.evaluate(x[:6], y[:6]).accuracy == np.mean(x[:6].argmax(1) == y[:6])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("C", [70, 100, 1000])
def test_rows_find_their_max_in_any_lane(dtype, C):
    """The arg-max search reads only the lanes (index mod 32) whose running max is the max:
    the max at each position in turn (tail included), ties in one lane and across lanes, and
    the max value also equal to -inf in a row of -inf; loss and gradient match the
    reference."""
    rng = np.random.default_rng(C)
    positions = list(range(C))
    x = rng.standard_normal((len(positions) + 4, C)).astype(dtype)
    for r, k in enumerate(positions):
        x[r, k] = 9                              # the max at every position
    r = len(positions)
    x[r, [33, 40]] = 9                           # lanes 1 and 8 of the second group
    x[r + 1, [1, 33 if C > 33 else 2]] = 9       # one lane, two groups
    x[r + 2, :] = -np.inf
    x[r + 2, C - 1] = -1                         # the max in the tail
    x[r + 3, [C - 2, C - 1]] = 9                 # a tie at the end
    y = rng.integers(0, C, len(x))
    loss, grad = fastxent.cross_entropy_loss_and_grad(x, y, reduction="none")
    ref_loss, ref_grad = cross_entropy_ref(x, y, reduction="none")
    rtol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(loss, ref_loss, rtol=rtol, atol=1e-7)
    np.testing.assert_allclose(grad, ref_grad, rtol=rtol, atol=1e-7)
