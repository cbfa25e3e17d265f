"""Randomised cross-checks against PyTorch and scikit-learn (skipped when absent)."""

import itertools
import warnings
import zlib

import numpy as np
import pytest

import fastxent
from helpers import REDUCTIONS, assert_close, labels, logits, soft_targets


def _torch():
    return pytest.importorskip("torch")


def _rng(*key):
    return np.random.default_rng(zlib.crc32(repr(key).encode()))


# ---- PyTorch: multiclass --------------------------------------------------------------------

MC_CASES = [
    (weight, ignore, smoothing, target, layout)
    for weight, ignore, smoothing, target, layout in itertools.product(
        (False, True), (None, -100, 1), (0.0, 0.15), ("labels", "soft"), ("NC", "NCHW"))
    if not (target == "soft" and ignore is not None)
]


@pytest.mark.parametrize("weight, ignore, smoothing, target, layout", MC_CASES,
                         ids=[f"w{w:d}-ign{i}-ls{s}-{t}-{lay}" for w, i, s, t, lay in MC_CASES])
def test_torch_cross_entropy(weight, ignore, smoothing, target, layout):
    """F.cross_entropy loss and autograd gradient, every reduction, float32 and float64,
    (N, C) and (N, C, d1, d2) with axis=1."""
    torch = _torch()
    F = torch.nn.functional
    rng = _rng(weight, ignore, smoothing, target, layout)
    n_classes = 5
    shape = (23, n_classes) if layout == "NC" else (4, n_classes, 3, 6)
    rows = (shape[0],) + shape[2:]
    for dtype, reduction in itertools.product(("float32", "float64"), REDUCTIONS):
        x = logits(rng, shape, dtype)
        if target == "labels":
            t = labels(rng, rows, n_classes)
            if ignore is not None:
                t.reshape(-1)[::4] = ignore
            tt = torch.from_numpy(t)
        else:
            t = soft_targets(rng, shape, dtype, axis=1)
            tt = torch.from_numpy(t)
        w = rng.uniform(0.2, 3.0, size=n_classes).astype(dtype) if weight else None
        kw = {"reduction": reduction, "label_smoothing": smoothing}
        if ignore is not None:
            kw["ignore_index"] = ignore
        xt = torch.from_numpy(x.copy()).requires_grad_(True)
        lt = F.cross_entropy(xt, tt, weight=None if w is None else torch.from_numpy(w), **kw)
        lt.sum().backward()
        loss, grad = fastxent.cross_entropy_loss_and_grad(x, t, axis=1, weight=w, **kw)
        what = f"{dtype} {reduction}"
        assert_close(loss, lt.detach().numpy(), dtype, rtol=1e-5 if dtype == "float32"
                     else 1e-11, what="loss " + what)
        assert_close(grad, xt.grad.numpy(), dtype, rtol=1e-5 if dtype == "float32" else 1e-11,
                     what="grad " + what)


@pytest.mark.parametrize("weight", [False, True])
@pytest.mark.parametrize("ignore", [None, 2])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_torch_nll_of_log_probabilities(weight, ignore, reduction):
    """Probabilities with labels equal F.nll_loss(log p), gradient d/dp included."""
    torch = _torch()
    rng = _rng(weight, ignore, reduction)
    p = rng.uniform(0.02, 1.0, size=(30, 4))
    p /= p.sum(axis=1, keepdims=True)
    y = labels(rng, (30,), 4)
    w = rng.uniform(0.5, 2.0, size=4) if weight else None
    kw = {"reduction": reduction}
    if ignore is not None:
        kw["ignore_index"] = ignore
    pt = torch.from_numpy(p.copy()).requires_grad_(True)
    lt = torch.nn.functional.nll_loss(torch.log(pt), torch.from_numpy(y),
                                      weight=None if w is None else torch.from_numpy(w), **kw)
    lt.sum().backward()
    loss, grad = fastxent.cross_entropy_loss_and_grad(p, y, from_logits=False, weight=w, **kw)
    np.testing.assert_allclose(loss, lt.detach().numpy(), rtol=1e-12)
    np.testing.assert_allclose(grad, pt.grad.numpy(), rtol=1e-12, atol=1e-14)


def test_torch_confident_row_float32_loses_it():
    """Document the peer trap: PyTorch float32 gives 0.0 for [20, 0, 0]; fastxent does not."""
    torch = _torch()
    x = np.array([[20.0, 0.0, 0.0]], dtype=np.float32)
    peer = float(torch.nn.functional.cross_entropy(torch.from_numpy(x), torch.tensor([0])))
    ours = float(fastxent.cross_entropy(x, np.array([0])))
    assert ours == pytest.approx(4.1223073758387905e-09, rel=1e-6)
    assert peer == 0.0 or peer == pytest.approx(ours, rel=1e-6)


# ---- PyTorch: binary ------------------------------------------------------------------------

BIN_WEIGHTS = {"none": None, "scalar": (), "col": (-1,), "row": (0,), "full": (0, -1)}


def _broadcast_weight(rng, kind, shape):
    dims = BIN_WEIGHTS[kind]
    if dims is None:
        return None
    wshape = tuple(shape[d] if (d in dims or d - len(shape) in dims) else 1
                   for d in range(len(shape)))
    if kind == "scalar":
        wshape = ()
    return rng.uniform(0.2, 2.5, size=wshape)


@pytest.mark.parametrize("shape", [(40, 6), (10, 70), (3, 4, 5)])
@pytest.mark.parametrize("weight", list(BIN_WEIGHTS))
@pytest.mark.parametrize("pos_weight", [False, True])
def test_torch_bce_with_logits(shape, weight, pos_weight):
    """F.binary_cross_entropy_with_logits with weight (every broadcast) and pos_weight, soft
    targets, every reduction, float32 and float64: loss and autograd gradient."""
    torch = _torch()
    F = torch.nn.functional
    rng = _rng(shape, weight, pos_weight)
    for dtype, reduction in itertools.product(("float32", "float64"), REDUCTIONS):
        x = rng.normal(0, 3, size=shape).astype(dtype)
        y = rng.uniform(size=shape).astype(dtype)
        y.reshape(-1)[::3] = np.round(y.reshape(-1)[::3])
        w = _broadcast_weight(rng, weight, shape)
        w = None if w is None else np.asarray(w, dtype)
        pw = rng.uniform(0.5, 4.0, size=shape[-1]).astype(dtype) if pos_weight else None
        xt = torch.from_numpy(x.copy()).requires_grad_(True)
        lt = F.binary_cross_entropy_with_logits(
            xt, torch.from_numpy(y), reduction=reduction,
            weight=None if w is None else torch.from_numpy(np.array(w)),
            pos_weight=None if pw is None else torch.from_numpy(pw))
        lt.sum().backward()
        loss, grad = fastxent.binary_cross_entropy_loss_and_grad(x, y, weight=w, pos_weight=pw,
                                                                 reduction=reduction)
        rtol = 1e-5 if dtype == "float32" else 1e-11
        what = f"{dtype} {reduction}"
        assert_close(loss, lt.detach().numpy(), dtype, rtol=rtol, what="loss " + what)
        assert_close(grad, xt.grad.numpy(), dtype, rtol=rtol, what="grad " + what)


@pytest.mark.parametrize("weight", list(BIN_WEIGHTS))
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_torch_bce_probabilities(weight, dtype):
    """F.binary_cross_entropy on probabilities away from 0 and 1 (torch clamps log at -100,
    fastxent clips p at eps: equal there), every reduction, loss and gradient."""
    torch = _torch()
    F = torch.nn.functional
    rng = _rng(weight, dtype)
    shape = (25, 8)
    for reduction in REDUCTIONS:
        p = rng.uniform(0.01, 0.99, size=shape).astype(dtype)
        y = rng.uniform(size=shape).astype(dtype)
        w = _broadcast_weight(rng, weight, shape)
        w = None if w is None else np.asarray(w, dtype)
        pt = torch.from_numpy(p.copy()).requires_grad_(True)
        lt = F.binary_cross_entropy(pt, torch.from_numpy(y), reduction=reduction,
                                    weight=None if w is None else torch.from_numpy(np.array(w)))
        lt.sum().backward()
        loss, grad = fastxent.binary_cross_entropy_loss_and_grad(
            p, y, from_logits=False, weight=w, reduction=reduction)
        rtol = 1e-5 if dtype == "float32" else 1e-11
        assert_close(loss, lt.detach().numpy(), dtype, rtol=rtol, what=f"loss {reduction}")
        assert_close(grad, pt.grad.numpy(), dtype, rtol=rtol, what=f"grad {reduction}")


@pytest.mark.parametrize("from_logits", [True, False])
def test_torch_binary_ignore_index_as_zero_weight(from_logits):
    """fastxent's binary ignore_index equals PyTorch with weight 0 on the masked elements and
    the mean taken over the counted ones."""
    torch = _torch()
    F = torch.nn.functional
    rng = _rng("ignore", from_logits)
    x = rng.normal(0, 2, size=(12, 7)) if from_logits else rng.uniform(0.05, 0.95, (12, 7))
    y = rng.integers(0, 2, size=(12, 7)).astype(np.float64)
    y[rng.uniform(size=y.shape) < 0.3] = -1.0
    mask = (y != -1).astype(np.float64)
    xt = torch.from_numpy(x.copy()).requires_grad_(True)
    fn = F.binary_cross_entropy_with_logits if from_logits else F.binary_cross_entropy
    lt = fn(xt, torch.from_numpy(np.where(y == -1, 0.0, y)), weight=torch.from_numpy(mask),
            reduction="sum") / mask.sum()
    lt.backward()
    loss, grad = fastxent.binary_cross_entropy_loss_and_grad(x, y, ignore_index=-1,
                                                             from_logits=from_logits)
    np.testing.assert_allclose(loss, float(lt.detach()), rtol=1e-12)
    np.testing.assert_allclose(grad, xt.grad.numpy(), rtol=1e-12, atol=1e-15)


# ---- scikit-learn log_loss ------------------------------------------------------------------

def _log_loss():
    return pytest.importorskip("sklearn.metrics").log_loss


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("sample_weight", [False, True])
@pytest.mark.parametrize("n_classes", [2, 3, 6])
def test_sklearn_log_loss_multiclass(n_classes, sample_weight, dtype):
    """log_loss(y, P, sample_weight) == cross_entropy(P, y, from_logits=False,
    sample_weight), including rows with zeros (clipped at the dtype's eps)."""
    log_loss = _log_loss()
    rng = _rng(n_classes, sample_weight, dtype)
    p = rng.uniform(0.0, 1.0, size=(50, n_classes))
    p[::7, 0] = 0.0
    p /= p.sum(axis=1, keepdims=True)
    p = p.astype(dtype)
    y = labels(rng, (50,), n_classes)
    y[::7] = 0                                 # p = 0 at the label: clipped at eps
    s = rng.uniform(0.1, 3.0, size=50) if sample_weight else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")        # float32 rows may not sum to 1 exactly
        expected = log_loss(y, p, sample_weight=s, labels=np.arange(n_classes))
    got = fastxent.cross_entropy(p, y, from_logits=False, sample_weight=s)
    assert float(got) == pytest.approx(expected, rel=1e-5 if dtype == "float32" else 1e-12)


@pytest.mark.parametrize("sample_weight", [False, True])
def test_sklearn_log_loss_binary(sample_weight):
    """Binary log_loss via a 2-column input, and the binary family with weights."""
    log_loss = _log_loss()
    rng = _rng("binary", sample_weight)
    p = rng.uniform(0.01, 0.99, size=60)
    y = rng.integers(0, 2, size=60)
    s = rng.uniform(0.1, 3.0, size=60) if sample_weight else None
    expected = log_loss(y, np.column_stack([1 - p, p]), sample_weight=s)
    two_col = fastxent.cross_entropy(np.column_stack([1 - p, p]), y, from_logits=False,
                                     sample_weight=s)
    assert float(two_col) == pytest.approx(expected, rel=1e-12)
    weights = np.ones(60) if s is None else s
    binary = fastxent.binary_cross_entropy(p, y.astype(np.float64), from_logits=False,
                                           weight=weights, reduction="sum") / weights.sum()
    assert float(binary) == pytest.approx(expected, rel=1e-12)
