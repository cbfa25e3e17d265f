"""Both multiclass row paths against the reference, with every option.

Contiguous logits with integer labels and at most 64 classes take the short-row path
(statistics of 64 rows at a time, vectorised across rows); wider rows, soft targets,
probabilities and strided layouts take the per-row path. Row counts here are not multiples of
64, so batch edges are crossed too.
"""

import itertools

import numpy as np
import pytest

import fastxent
from helpers import assert_close, labels, logits
from reference import cross_entropy_ref

OPTIONS = [
    {},
    {"weight": True},
    {"sample_weight": True},
    {"ignore_index": 0},
    {"label_smoothing": 0.2},
    {"weight": True, "sample_weight": True, "ignore_index": -1, "label_smoothing": 0.1},
]


def _options(rng, opts, n_rows, n_classes, dtype):
    kw = dict(opts)
    if kw.get("weight"):
        kw["weight"] = rng.uniform(0.5, 2.0, n_classes)
    if kw.get("sample_weight"):
        kw["sample_weight"] = rng.uniform(0.0, 3.0, n_rows)
    return kw


@pytest.mark.parametrize("n_classes", [2, 10, 64, 65, 300])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("opts", OPTIONS, ids=lambda o: "-".join(o) or "plain")
def test_label_rows(n_classes, dtype, opts):
    rng = np.random.default_rng(n_classes)
    n_rows = 301
    x = logits(rng, (n_rows, n_classes), dtype, scale=6.0)
    y = labels(rng, (n_rows,), n_classes)
    if "ignore_index" in opts:
        y[::7] = opts["ignore_index"]
    kw = _options(rng, opts, n_rows, n_classes, dtype)
    for reduction in ("none", "mean"):
        loss, grad = fastxent.cross_entropy_loss_and_grad(x, y, reduction=reduction, **kw)
        ref_loss, ref_grad = cross_entropy_ref(x, y, reduction=reduction, **kw)
        assert_close(loss, ref_loss, dtype, what=f"loss {reduction}")
        assert_close(grad, ref_grad, dtype, what=f"grad {reduction}")
        in_place = x.copy()
        loss_ip, grad_ip = fastxent.cross_entropy_loss_and_grad(
            in_place, y, reduction=reduction, out=in_place, **kw)
        assert grad_ip is in_place
        np.testing.assert_array_equal(grad_ip, grad)
        np.testing.assert_array_equal(loss_ip, loss)


@pytest.mark.parametrize("n_classes", [3, 64, 65])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_special_rows_in_both_paths(n_classes, dtype):
    """NaN, all -inf, a lone +inf at and away from the label, masked classes."""
    rng = np.random.default_rng(1)
    x = logits(rng, (6, n_classes), dtype)
    y = np.array([0, 1, 1, 2, 1, 0])
    x[0, 1] = np.nan
    x[1, :] = -np.inf
    x[2, 1] = np.inf
    x[3, 0] = np.inf
    x[4, 0] = -np.inf
    loss, grad = fastxent.cross_entropy_loss_and_grad(x, y, reduction="none")
    assert np.isnan(loss[0]) and np.all(np.isnan(grad[0]))
    assert np.isnan(loss[1]) and np.all(np.isnan(grad[1]))
    assert loss[2] == 0 and np.all(grad[2] == 0)
    assert loss[3] == np.inf
    masked = np.delete(x[4:5].astype(np.float64), 0, axis=1)
    ref_loss, _ = cross_entropy_ref(masked, y[4:5] - 1, reduction="none")
    assert_close(loss[4:5], ref_loss, dtype)
    assert grad[4, 0] == 0
    ref_loss, ref_grad = cross_entropy_ref(x[5:], y[5:], reduction="none")
    assert_close(loss[5:], ref_loss, dtype)
    assert_close(grad[5:], ref_grad, dtype)


@pytest.mark.parametrize("n_classes", [10, 300])
def test_paths_agree_with_threads(n_classes):
    """Bitwise identical for 1 and 2 threads, above the serial threshold."""
    rng = np.random.default_rng(2)
    x = logits(rng, (200_000 // n_classes * 3, n_classes), np.float32)
    y = labels(rng, x.shape[:1], n_classes)
    a = fastxent.cross_entropy_loss_and_grad(x, y, reduction="sum", n_threads=1)
    b = fastxent.cross_entropy_loss_and_grad(x, y, reduction="sum", n_threads=2)
    assert a[0] == b[0]
    np.testing.assert_array_equal(a[1], b[1])


def test_short_and_per_row_paths_match():
    """The same rows through the short path (contiguous) and the per-row path (axis=0)."""
    rng = np.random.default_rng(3)
    for dtype, n_classes in itertools.product((np.float32, np.float64), (5, 64)):
        x = logits(rng, (257, n_classes), dtype, scale=10.0)
        y = labels(rng, (257,), n_classes)
        short = fastxent.cross_entropy_loss_and_grad(x, y, reduction="none",
                                                     label_smoothing=0.1)
        per_row = fastxent.cross_entropy_loss_and_grad(np.ascontiguousarray(x.T), y, axis=0,
                                                       reduction="none", label_smoothing=0.1)
        assert_close(short[0], per_row[0], dtype)
        assert_close(short[1], per_row[1].T, dtype)


@pytest.mark.parametrize("n_classes", [3, 7, 64])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_short_row_results_do_not_depend_on_position(n_classes, dtype):
    # A row's loss and gradient are the same bits wherever it sits in the batch of 64 rows
    # (libmvec's vector and glibc's scalar exp/log1p may differ in the last bit).
    rng = np.random.default_rng(n_classes)
    x = (3 * rng.standard_normal((300, n_classes))).astype(dtype)
    y = rng.integers(0, n_classes, 300)
    loss = fastxent.cross_entropy(x, y, reduction="none")
    grad = fastxent.cross_entropy_grad(x, y, reduction="sum")
    for shift in range(1, 20):
        np.testing.assert_array_equal(
            fastxent.cross_entropy(x[shift:], y[shift:], reduction="none"), loss[shift:])
        np.testing.assert_array_equal(
            fastxent.cross_entropy_grad(x[shift:], y[shift:], reduction="sum"), grad[shift:])
