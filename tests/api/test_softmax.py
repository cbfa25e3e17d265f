"""softmax, log_softmax and logsumexp against float64 references and PyTorch."""

import numpy as np
import pytest

import fastxent
from helpers import assert_close, logits

LAYOUTS = [((7, 5), -1), ((3, 4, 2), 1), ((6, 3), 0), ((9,), 0), ((2, 300), -1)]


def _reference(x, axis):
    z = x.astype(np.float64)
    m = np.max(z, axis=axis, keepdims=True)
    lse = m + np.log(np.sum(np.exp(z - m), axis=axis, keepdims=True))
    return np.exp(z - lse), z - lse, np.squeeze(lse, axis=axis)


@pytest.mark.parametrize("layout", LAYOUTS, ids=str)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n_threads", [1, 2])
def test_values(layout, dtype, n_threads):
    shape, axis = layout
    x = logits(np.random.default_rng(0), shape, dtype, scale=5.0)
    soft, log_soft, lse = _reference(x, axis)
    for func, expected in ((fastxent.softmax, soft), (fastxent.log_softmax, log_soft),
                           (fastxent.logsumexp, lse)):
        got = func(x, axis=axis, n_threads=n_threads)
        assert got.dtype == dtype and got.shape == expected.shape
        assert_close(got, expected, dtype, what=func.__name__)


@pytest.mark.parametrize("func", [fastxent.softmax, fastxent.log_softmax])
@pytest.mark.parametrize("axis", [-1, 1])
def test_out_and_in_place(func, axis):
    x = logits(np.random.default_rng(1), (5, 4, 3), np.float32)
    expected = func(x, axis=axis)
    out = np.empty_like(x)
    assert func(x, axis=axis, out=out) is out
    np.testing.assert_array_equal(out, expected)
    y = x.copy()
    assert func(y, axis=axis, out=y) is y
    np.testing.assert_array_equal(y, expected)


def test_logsumexp_out_and_errors():
    x = logits(np.random.default_rng(2), (4, 6), np.float64)
    out = np.full(4, -1.0)
    assert fastxent.logsumexp(x, out=out) is out
    assert_close(out, _reference(x, -1)[2], np.float64)
    sentinel = np.full(6, -1.0)
    with pytest.raises(ValueError, match=r"out must have shape \(4,\)"):
        fastxent.logsumexp(x, out=sentinel)
    np.testing.assert_array_equal(sentinel, -1.0)
    with pytest.raises(ValueError, match="axis 2 is out of bounds"):
        fastxent.softmax(x, axis=2)
    with pytest.raises(ValueError, match="n_threads=0"):
        fastxent.log_softmax(x, n_threads=0)


def test_special_values():
    x = np.array([[-np.inf, -np.inf], [np.inf, 0.0], [np.nan, 1.0], [1e4, -1e4]])
    np.testing.assert_array_equal(fastxent.logsumexp(x), [-np.inf, np.inf, np.nan, 1e4])
    soft = fastxent.softmax(x)
    np.testing.assert_array_equal(soft[1], [1.0, 0.0])
    assert np.all(np.isnan(soft[2]))
    np.testing.assert_array_equal(fastxent.log_softmax(x)[3], [0.0, -2e4])


def test_confident_log_softmax_is_exact():
    """log_softmax at the arg-max is -log1p(rest): float32 keeps 4.1223e-9."""
    x = np.array([[20.0, 0.0, 0.0]], np.float32)
    got = fastxent.log_softmax(x)[0, 0]
    assert got == pytest.approx(-4.1223073758387905e-09, rel=1e-6)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_against_torch(dtype):
    torch = pytest.importorskip("torch")
    x = logits(np.random.default_rng(3), (4, 7, 5), dtype, scale=4.0)
    t = torch.from_numpy(x)
    for axis in (-1, 1, 0):
        assert_close(fastxent.softmax(x, axis=axis), torch.softmax(t, axis).numpy(), dtype)
        assert_close(fastxent.log_softmax(x, axis=axis), torch.log_softmax(t, axis).numpy(),
                     dtype)
        assert_close(fastxent.logsumexp(x, axis=axis), torch.logsumexp(t, axis).numpy(), dtype)
