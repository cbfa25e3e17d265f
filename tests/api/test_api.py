"""The array API: out=, in-place, read-only and memory-mapped inputs, empty inputs, dtypes."""

import itertools

import numpy as np
import pytest

import fastxent
from helpers import REDUCTIONS, labels, logits, probabilities, soft_targets
from reference import binary_cross_entropy_ref, cross_entropy_ref

# ---- out= and in place ----------------------------------------------------------------------

MC_OPTIONS = {
    "plain": {},
    "weight_smoothing": {"weight": [0.5, 2.0, 1.0, 1.5], "label_smoothing": 0.2},
    "sample_weight_ignore": {"sample_weight": True, "ignore_index": 3},
}
MC_LAYOUTS = {"rows": ((50, 4), -1), "NCHW": ((3, 4, 5, 6), 1), "big": ((9000, 4), -1)}


def _mc_case(rng, layout, from_logits, target, opts, dtype):
    shape, axis = MC_LAYOUTS[layout]
    rows_shape = np.moveaxis(np.empty(shape), axis, -1).shape[:-1]
    x = (logits(rng, shape, dtype) if from_logits
         else probabilities(rng, shape, dtype, axis=axis))
    t = (labels(rng, rows_shape, 4) if target == "labels"
         else soft_targets(rng, shape, dtype, axis=axis))
    kwargs = dict(MC_OPTIONS[opts], axis=axis)
    if kwargs.get("sample_weight") is True:
        kwargs["sample_weight"] = rng.uniform(0.5, 2.0, size=rows_shape)
    return x, t, kwargs


def _mc_in_place_cases():
    for layout, from_logits, target, opts, dtype in itertools.product(
            MC_LAYOUTS, (True, False), ("labels", "soft"), MC_OPTIONS, ("float32", "float64")):
        if target == "soft" and "ignore_index" in MC_OPTIONS[opts]:
            continue
        if layout == "big" and (opts != "plain" or dtype == "float32"):
            continue
        yield pytest.param(layout, from_logits, target, opts, dtype,
                           id=f"{layout}-{from_logits}-{target}-{opts}-{dtype}")


@pytest.mark.parametrize("layout, from_logits, target, opts, dtype", list(_mc_in_place_cases()))
def test_multiclass_in_place_equals_out_of_place(layout, from_logits, target, opts, dtype):
    """``out=input`` overwrites the input with exactly the out-of-place gradient."""
    rng = np.random.default_rng(7)
    x, t, kwargs = _mc_case(rng, layout, from_logits, target, opts, dtype)
    for reduction, n_threads in itertools.product(REDUCTIONS, (1, 2)):
        kw = dict(kwargs, from_logits=from_logits, reduction=reduction, n_threads=n_threads)
        loss, grad = fastxent.cross_entropy_loss_and_grad(x, t, **kw)
        buf = x.copy()
        loss_ip, grad_ip = fastxent.cross_entropy_loss_and_grad(buf, t, out=buf, **kw)
        assert grad_ip is buf
        np.testing.assert_array_equal(grad_ip, grad)
        np.testing.assert_array_equal(loss_ip, loss)
        buf = x.copy()
        assert fastxent.cross_entropy_grad(buf, t, out=buf, **kw) is buf
        np.testing.assert_array_equal(buf, grad)


@pytest.mark.parametrize("target", [np.array([1]), np.array([[0.2, 0.3, 0.5]])],
                         ids=["smoothed_label", "soft"])
def test_in_place_loss_minimal(target):
    """Minimal case: logits [[1, 2, 0.5]] with label smoothing or soft targets, in place."""
    z = np.array([[1.0, 2.0, 0.5]])
    kw = {"label_smoothing": 0.2} if target.ndim == 1 else {}
    expected = cross_entropy_ref(z, target, **kw)
    buf = z.copy()
    loss, grad = fastxent.cross_entropy_loss_and_grad(buf, target, out=buf, **kw)
    np.testing.assert_allclose(grad, expected[1], rtol=1e-14)
    assert float(loss) == pytest.approx(expected[0], rel=1e-14)


@pytest.mark.parametrize("from_logits", [True, False])
@pytest.mark.parametrize("opts", [
    {}, {"weight": "col", "pos_weight": "col"}, {"weight": "row"}, {"weight": "full"},
    {"ignore_index": -1, "label_smoothing": 0.1}], ids=lambda o: "-".join(o) or "plain")
@pytest.mark.parametrize("shape", [(40, 7), (20, 80), (3, 4, 5), (2100, 16)])
def test_binary_in_place_equals_out_of_place(shape, opts, from_logits):
    """Binary: ``out=input`` gives exactly the out-of-place gradient and loss."""
    rng = np.random.default_rng(8)
    x = (rng.normal(0, 3, size=shape) if from_logits else rng.uniform(0.01, 0.99, size=shape))
    y = rng.uniform(0, 1, size=shape)
    kwargs = {}
    for k, v in opts.items():
        if v == "col":
            v = rng.uniform(0.5, 2, size=shape[-1:])
        elif v == "row":
            v = rng.uniform(0.5, 2, size=shape[:-1] + (1,))
        elif v == "full":
            v = rng.uniform(0.5, 2, size=shape)
        kwargs[k] = v
    if "ignore_index" in kwargs:
        y.reshape(-1)[::5] = -1
    for reduction, n_threads in itertools.product(REDUCTIONS, (1, 2)):
        kw = dict(kwargs, from_logits=from_logits, reduction=reduction, n_threads=n_threads)
        loss, grad = fastxent.binary_cross_entropy_loss_and_grad(x, y, **kw)
        buf = x.copy()
        loss_ip, grad_ip = fastxent.binary_cross_entropy_loss_and_grad(buf, y, out=buf, **kw)
        assert grad_ip is buf
        np.testing.assert_array_equal(grad_ip, grad)
        np.testing.assert_array_equal(loss_ip, loss)


@pytest.mark.parametrize("family", ["multiclass", "binary"])
def test_out_shares_memory_and_is_fully_written(family):
    """The returned gradient is `out` itself and every element of it is overwritten."""
    rng = np.random.default_rng(1)
    x = rng.normal(size=(30, 6))
    if family == "multiclass":
        t = labels(rng, (30,), 6)
        fn, ref = fastxent.cross_entropy_grad, cross_entropy_ref
    else:
        t = rng.uniform(size=(30, 6))
        fn, ref = fastxent.binary_cross_entropy_grad, binary_cross_entropy_ref
    out = np.full_like(x, np.nan)
    grad = fn(x, t, out=out)
    assert grad is out
    assert np.shares_memory(grad, out)
    assert not np.shares_memory(grad, x)
    np.testing.assert_allclose(out, ref(x, t)[1], rtol=1e-12, atol=1e-15)


def test_out_may_be_a_view_into_a_bigger_buffer():
    """A C-contiguous view (a slab of a bigger array) is a valid `out`."""
    rng = np.random.default_rng(2)
    x = rng.normal(size=(10, 3))
    y = labels(rng, (10,), 3)
    big = np.full((3, 10, 3), 9.0)
    grad = fastxent.cross_entropy_grad(x, y, out=big[1])
    assert np.shares_memory(grad, big)
    np.testing.assert_allclose(big[1], cross_entropy_ref(x, y)[1], rtol=1e-12, atol=1e-15)
    np.testing.assert_array_equal(big[[0, 2]], 9.0)


# ---- read-only and memory-mapped inputs -----------------------------------------------------

def _read_only(*arrays):
    out = []
    for a in arrays:
        a = np.array(a, copy=True)
        a.flags.writeable = False
        out.append(a)
    return out


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_read_only_inputs(dtype):
    """Read-only input, labels, soft targets and weights are accepted."""
    rng = np.random.default_rng(3)
    x, p = logits(rng, (20, 4), dtype), probabilities(rng, (20, 4), dtype)
    y, s = labels(rng, (20,), 4, np.int32), soft_targets(rng, (20, 4), dtype)
    w, sw = np.array([1.0, 2.0, 0.5, 1.0]), rng.uniform(0.5, 1.5, size=20)
    xr, pr, yr, sr, wr, swr = _read_only(x, p, y, s, w, sw)
    for inp, tgt, fl in ((xr, yr, True), (xr, sr, True), (pr, yr, False), (pr, sr, False)):
        kw = dict(from_logits=fl, weight=wr, sample_weight=swr)
        loss, grad = fastxent.cross_entropy_loss_and_grad(inp, tgt, **kw)
        rl, rg = cross_entropy_ref(inp, tgt, **kw)
        np.testing.assert_allclose(loss, rl, rtol=1e-5 if dtype == "float32" else 1e-12)
        np.testing.assert_allclose(grad, rg, rtol=1e-5 if dtype == "float32" else 1e-12,
                                   atol=1e-6)
    yb, wb, pwb = _read_only(rng.uniform(size=(20, 4)), rng.uniform(size=(20, 1)),
                             np.ones(4) * 2)
    loss, grad = fastxent.binary_cross_entropy_loss_and_grad(xr, yb, weight=wb, pos_weight=pwb)
    rl, rg = binary_cross_entropy_ref(xr, yb, weight=wb, pos_weight=pwb)
    np.testing.assert_allclose(loss, rl, rtol=1e-5 if dtype == "float32" else 1e-12)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_memmap_inputs(tmp_path, dtype):
    """np.memmap inputs opened read-only work (also for the binary family)."""
    rng = np.random.default_rng(4)
    x = logits(rng, (64, 5), dtype)
    y = labels(rng, (64,), 5, np.uint8)
    t = rng.uniform(size=(64, 5)).astype(dtype)
    maps = {}
    for name, arr in (("x", x), ("y", y), ("t", t)):
        path = tmp_path / f"{name}.bin"
        arr.tofile(path)
        maps[name] = np.memmap(path, dtype=arr.dtype, mode="r", shape=arr.shape)
    loss, grad = fastxent.cross_entropy_loss_and_grad(maps["x"], maps["y"], reduction="none")
    rl, rg = cross_entropy_ref(x, y, reduction="none")
    tol = 1e-5 if dtype == "float32" else 1e-12
    np.testing.assert_allclose(loss, rl, rtol=tol)
    np.testing.assert_allclose(grad, rg, rtol=tol, atol=tol)
    bl = fastxent.binary_cross_entropy(maps["x"], maps["t"])
    np.testing.assert_allclose(bl, binary_cross_entropy_ref(x, t)[0], rtol=tol)


def test_memmap_read_only_cannot_be_out(tmp_path):
    """A read-only memmap as `out=input` is refused, untouched."""
    x = np.linspace(-1, 1, 12).reshape(4, 3)
    path = tmp_path / "x.bin"
    x.tofile(path)
    mm = np.memmap(path, dtype=np.float64, mode="r", shape=(4, 3))
    with pytest.raises(ValueError, match="writeable"):
        fastxent.cross_entropy_grad(mm, np.array([0, 1, 2, 0]), out=mm)
    np.testing.assert_array_equal(np.fromfile(path), x.reshape(-1))


def test_memmap_in_place_writable(tmp_path):
    """A writable memmap ("r+") can take the gradient in place."""
    rng = np.random.default_rng(5)
    x = rng.normal(size=(8, 3))
    y = labels(rng, (8,), 3)
    path = tmp_path / "x.bin"
    x.tofile(path)
    mm = np.memmap(path, dtype=np.float64, mode="r+", shape=(8, 3))
    fastxent.cross_entropy_grad(mm, y, out=mm)
    mm.flush()
    np.testing.assert_allclose(np.fromfile(path).reshape(8, 3), cross_entropy_ref(x, y)[1],
                               rtol=1e-12, atol=1e-15)


# ---- empty inputs ---------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("case", ["labels", "soft", "probs", "axis1"])
def test_multiclass_empty(case, dtype):
    """N = 0: mean is NaN, sum is 0, none is an empty array; the gradient is empty."""
    shape, axis = ((0, 3), -1) if case != "axis1" else ((2, 3, 0), 1)
    x = np.zeros(shape, dtype)
    rows = np.moveaxis(x, axis, -1).shape[:-1]
    t = np.zeros(shape, dtype) if case == "soft" else np.zeros(rows, np.int64)
    kw = dict(axis=axis, from_logits=case != "probs")
    mean = fastxent.cross_entropy(x, t, **kw)
    assert np.isnan(mean) and mean.dtype == dtype
    total = fastxent.cross_entropy(x, t, reduction="sum", **kw)
    assert total == 0 and total.dtype == dtype
    none = fastxent.cross_entropy(x, t, reduction="none", **kw)
    assert none.shape == rows and none.dtype == dtype
    loss, grad = fastxent.cross_entropy_loss_and_grad(x, t, **kw)
    assert np.isnan(loss)
    assert grad.shape == shape and grad.dtype == dtype
    out = np.zeros(shape, dtype)
    assert fastxent.cross_entropy_grad(x, t, out=out, **kw) is out
    assert np.isnan(fastxent.cross_entropy(x, t, weight=[1, 2, 3], **kw))
    # empty sample weights (the debug build bounds-checks the kernels' element 0)
    s = np.zeros(rows)
    assert np.isnan(fastxent.cross_entropy(x, t, weight=[1, 2, 3], sample_weight=s, **kw))
    assert fastxent.evaluate(x, t, weight=[1, 2, 3], sample_weight=s, **kw).count == 0


@pytest.mark.parametrize("shape", [(0,), (0, 4), (3, 0), (2, 0, 80)])
def test_binary_empty(shape):
    """Empty binary inputs: mean NaN, sum 0, none and grad empty of the input's shape."""
    x = np.zeros(shape)
    y = np.zeros(shape)
    assert np.isnan(fastxent.binary_cross_entropy(x, y))
    assert fastxent.binary_cross_entropy(x, y, reduction="sum") == 0.0
    assert fastxent.binary_cross_entropy(x, y, reduction="none").shape == shape
    assert fastxent.binary_cross_entropy_grad(x, y).shape == shape
    w = np.ones(shape[-1:])
    loss, grad = fastxent.binary_cross_entropy_loss_and_grad(x, y, weight=w, pos_weight=w,
                                                             ignore_index=-1)
    assert np.isnan(loss) and grad.shape == shape


# ---- dtypes ---------------------------------------------------------------------------------

@pytest.mark.parametrize("in_dtype, expected", [
    ("float32", "float32"), ("float64", "float64"), ("float16", "float64"),
    ("int8", "float64"), ("int32", "float64"), ("uint16", "float64"), ("int64", "float64"),
    ("longdouble", "float64")])
def test_computation_dtype(in_dtype, expected):
    """float32 stays float32, float64 stays float64, every other real dtype computes in f64."""
    x = np.array([[1, 0, 2], [0, 3, 1]], dtype=in_dtype)
    y = np.array([2, 0], dtype=np.int16)
    loss, grad = fastxent.cross_entropy_loss_and_grad(x, y)
    assert loss.dtype == expected and grad.dtype == expected
    assert fastxent.cross_entropy(x, y, reduction="none").dtype == expected
    exact = cross_entropy_ref(x.astype(np.float64), y)[0]
    assert float(loss) == pytest.approx(exact, rel=1e-6 if expected == "float32" else 1e-14)
    bl, bg = fastxent.binary_cross_entropy_loss_and_grad(x, np.ones(x.shape, np.int8))
    assert bl.dtype == expected and bg.dtype == expected


def test_soft_target_cast_to_input_dtype():
    """Soft targets of another float dtype are cast to the input's dtype."""
    rng = np.random.default_rng(6)
    x = logits(rng, (5, 3), np.float32)
    t64 = soft_targets(rng, (5, 3), np.float64)
    a = fastxent.cross_entropy(x, t64, reduction="none")
    b = fastxent.cross_entropy(x, t64.astype(np.float32), reduction="none")
    c = fastxent.cross_entropy(x, t64.astype(np.float16), reduction="none")
    assert a.dtype == np.float32
    np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(c, b, rtol=1e-3)


@pytest.mark.parametrize("label_dtype", ["int8", "uint8", "int16", "uint16", "int32", "uint32",
                                         "int64", "uint64"])
def test_label_dtypes_agree(label_dtype):
    """Every integer label dtype gives the same result as int64 labels."""
    rng = np.random.default_rng(9)
    x = logits(rng, (30, 7))
    y = labels(rng, (30,), 7)
    expected = fastxent.cross_entropy_loss_and_grad(x, y, reduction="none")
    got = fastxent.cross_entropy_loss_and_grad(x, y.astype(label_dtype), reduction="none")
    np.testing.assert_array_equal(got[0], expected[0])
    np.testing.assert_array_equal(got[1], expected[1])


def test_noncontiguous_labels_and_targets():
    """Strided labels and soft targets are read correctly."""
    rng = np.random.default_rng(10)
    x = logits(rng, (12, 4))
    y2 = labels(rng, (12, 2), 4)
    t2 = soft_targets(rng, (12, 8))[:, ::2]
    np.testing.assert_allclose(fastxent.cross_entropy(x, y2[:, 1]),
                               cross_entropy_ref(x, y2[:, 1])[0], rtol=1e-13)
    np.testing.assert_allclose(fastxent.cross_entropy(x, t2, validate=False),
                               cross_entropy_ref(x, t2)[0], rtol=1e-13)
