"""Independent float64 NumPy reference for the fastxent test suite.

Written from the formulas in ``docs/semantics.md`` (PyTorch and scikit-learn
conventions), not from fastxent's kernels: plain, vectorised, unoptimised NumPy in float64.

Every function returns ``(loss, grad)``: ``loss`` is the reduced loss (a float) or the
per-sample losses (``reduction="none"``); ``grad`` is the gradient of the reduced loss with
respect to the input (for ``"none"``: of the sum of the per-sample losses).
"""

import numpy as np

__all__ = [
    "compute_dtype",
    "cross_entropy_ref",
    "binary_cross_entropy_ref",
    "fd_grad",
    "sigmoid",
    "softplus",
    "ulp_distance_ok",
]


def compute_dtype(x):
    """The dtype fastxent computes in: float32 and float64 stay, every other real dtype -> f64."""
    dt = np.asarray(x).dtype
    return dt if dt in (np.float32, np.float64) else np.dtype(np.float64)


def _resolve_eps(eps, x):
    return float(np.finfo(compute_dtype(x)).eps) if eps is None else float(eps)


def _clip_bounds(eps, x):
    """Clip bounds ``[eps, 1 - eps]`` rounded to the computation dtype (as a kernel sees them)."""
    dt = compute_dtype(x)
    lo = dt.type(eps)
    hi = dt.type(1) - lo
    return float(lo), float(hi)


def _reduce(per_sample, grad, reduction, denominator):
    if reduction == "none":
        return per_sample, grad
    total = float(np.sum(per_sample))
    if reduction == "sum":
        return total, grad
    if reduction == "mean":
        if denominator == 0:
            return float("nan"), grad * 0.0
        return total / denominator, grad / denominator
    raise ValueError(reduction)


def log_softmax(z):
    """Row-wise log-softmax of a (N, C) float64 array: ``(z - m) - log1p(rest)``, with ``m``
    the row's max and ``rest`` the sum of ``exp(z_c - m)`` over the other classes than the
    first arg-max. A confident row's ``-logp`` (about ``rest``) keeps its relative precision:
    ``log(sum(exp))`` would lose it to ``1 + rest``."""
    m = np.max(z, axis=1, keepdims=True)
    with np.errstate(invalid="ignore", over="ignore"):
        terms = np.exp(z - m)
        terms[np.arange(z.shape[0]), np.argmax(z, axis=1)] = 0.0
        return (z - m) - np.log1p(np.sum(terms, axis=1, keepdims=True))


def _rows_and_target_weights(x, target, weight, sample_weight, ignore_index,
                             label_smoothing, axis):
    """``(xm, z, a, denominator)``: `x` in float64 with the class axis last (`xm`) and as
    rows (`z`), each row's target weights ``a`` (sample weight included) and the ``mean``
    denominator."""
    x = np.asarray(x).astype(np.float64)
    target = np.asarray(target)
    xm = np.moveaxis(x, axis, -1)
    n_classes = xm.shape[-1]
    z = xm.reshape(-1, n_classes)
    n_rows = z.shape[0]
    w = np.ones(n_classes) if weight is None else np.asarray(weight, dtype=np.float64)
    s = (np.ones(n_rows) if sample_weight is None
         else np.asarray(sample_weight, dtype=np.float64).reshape(-1))
    e = float(label_smoothing)

    if target.dtype.kind in "iu":
        y = target.reshape(-1).astype(np.int64)
        counted = (np.ones(n_rows, bool) if ignore_index is None else y != ignore_index)
        yc = np.where(counted, y, 0)
        # a_ic: (1-e) w_y [c == y] + (e/C) w_c
        a = np.tile((e / n_classes) * w, (n_rows, 1))
        a[np.arange(n_rows), yc] += (1.0 - e) * w[yc]
        a[~counted] = 0.0
        denominator = float(np.sum((s * w[yc])[counted]))
    else:
        t = np.moveaxis(target.astype(np.float64), axis, -1).reshape(-1, n_classes)
        a = w * ((1.0 - e) * t + e / n_classes)
        denominator = float(np.sum(s))
    a = a * s[:, None]
    return xm, z, a, denominator


def cross_entropy_ref(x, target, *, from_logits=True, weight=None, sample_weight=None,
                      ignore_index=None, label_smoothing=0.0, eps=None, reduction="mean",
                      axis=-1):
    """Multiclass cross-entropy and its gradient, float64.

    Parameters
    ----------
    x : array_like
        Logits or probabilities; classes along `axis`.
    target : array_like
        Integer labels (shape of `x` without `axis`) or float soft targets (shape of `x`).
    from_logits, weight, sample_weight, ignore_index, label_smoothing, eps, reduction, axis
        As in :func:`fastxent.cross_entropy`. ``eps=None`` is the machine epsilon of the
        dtype fastxent computes `x` in.

    Returns
    -------
    loss : float or ndarray
    grad : ndarray shaped like `x`
    """
    eps = _resolve_eps(eps, x)
    lo, hi = _clip_bounds(eps, x)
    xm, z, a, denominator = _rows_and_target_weights(x, target, weight, sample_weight,
                                                     ignore_index, label_smoothing, axis)
    rows_shape = xm.shape[:-1]

    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        if from_logits:
            logp = log_softmax(z)
            terms = np.where(a == 0, 0.0, a * -logp)
            per_row = np.sum(terms, axis=1)
            grad = np.sum(a, axis=1, keepdims=True) * np.exp(logp) - a
        else:
            pc = np.clip(z, lo, hi)
            per_row = -np.sum(a * np.log(pc), axis=1)
            grad = -a / pc
    grad = np.moveaxis(grad.reshape(xm.shape), -1, axis)
    return _reduce(per_row.reshape(rows_shape), grad, reduction, denominator)


def cross_entropy_hessian_ref(x, target, *, from_logits=True, weight=None, sample_weight=None,
                              ignore_index=None, label_smoothing=0.0, eps=None,
                              reduction="mean", axis=-1):
    """The Hessian's diagonal of multiclass cross-entropy, float64.

    Logits: ``sum(a) p (1 - p)`` per row with ``p = softmax(z)``; probabilities (clipped,
    differentiated at the clipped value): ``a / p^2``. ``a`` are the row's target weights as in
    :func:`cross_entropy_ref`; ``mean`` divides by its denominator.
    """
    eps = _resolve_eps(eps, x)
    lo, hi = _clip_bounds(eps, x)
    xm, z, a, denominator = _rows_and_target_weights(x, target, weight, sample_weight,
                                                     ignore_index, label_smoothing, axis)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        if from_logits:
            logp = log_softmax(z)
            # 1 - p as -expm1(log p): no cancellation for a confident row
            hess = np.sum(a, axis=1, keepdims=True) * np.exp(logp) * -np.expm1(logp)
        else:
            hess = a / np.clip(z, lo, hi) ** 2
    hess = np.moveaxis(hess.reshape(xm.shape), -1, axis)
    if reduction == "mean":
        return hess / denominator if denominator else hess * 0.0
    return hess


def sigmoid(z):
    """Logistic function, stable for large |z|."""
    z = np.asarray(z, dtype=np.float64)
    with np.errstate(over="ignore"):
        ez = np.exp(-np.abs(z))
    return np.where(z >= 0, 1.0 / (1.0 + ez), ez / (1.0 + ez))


def softplus(z):
    """``log(1 + exp(z))`` as ``max(z, 0) + log1p(exp(-|z|))``."""
    z = np.asarray(z, dtype=np.float64)
    return np.maximum(z, 0.0) + np.log1p(np.exp(-np.abs(z)))


def _binary_terms(x, target, weight, pos_weight, ignore_index, label_smoothing):
    """``(x, y', w, pw, counted)`` in float64: the smoothed targets, the weights broadcast
    to the input (1 when absent) and the elements not ignored."""
    x = np.asarray(x).astype(np.float64)
    y = np.asarray(target).astype(np.float64)
    counted = np.ones(x.shape, bool) if ignore_index is None else y != ignore_index
    e = float(label_smoothing)
    ys = y * (1.0 - e) + e / 2.0
    w = 1.0 if weight is None else np.broadcast_to(np.asarray(weight, np.float64), x.shape)
    pw = 1.0 if pos_weight is None else np.broadcast_to(np.asarray(pos_weight, np.float64),
                                                        x.shape)
    return x, ys, w, pw, counted


def binary_cross_entropy_ref(x, target, *, from_logits=True, weight=None, pos_weight=None,
                             ignore_index=None, label_smoothing=0.0, eps=None,
                             reduction="mean"):
    """Binary cross-entropy and its gradient, float64.

    Logits: ``w [(1-y) z + (1 + (pw-1) y) softplus(-z)]``, gradient
    ``w [(pw y + 1 - y) sigmoid(z) - pw y]``. Probabilities (clipped to [eps, 1-eps]):
    ``-w [pw y log p + (1-y) log(1-p)]``, gradient with respect to the clipped p. Targets are
    smoothed to ``y (1-e) + e/2``; elements whose target equals `ignore_index` give 0 and are
    not counted by ``mean``.
    """
    eps = _resolve_eps(eps, x)
    lo, hi = _clip_bounds(eps, x)
    x, ys, w, pw, counted = _binary_terms(x, target, weight, pos_weight, ignore_index,
                                          label_smoothing)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        if from_logits:
            loss = w * ((1.0 - ys) * x + (1.0 + (pw - 1.0) * ys) * softplus(-x))
            grad = w * ((pw * ys + 1.0 - ys) * sigmoid(x) - pw * ys)
        else:
            pc = np.clip(x, lo, hi)
            loss = -w * (pw * ys * np.log(pc) + (1.0 - ys) * np.log1p(-pc))
            grad = -w * (pw * ys / pc - (1.0 - ys) / (1.0 - pc))
    loss = np.where(counted, loss, 0.0) * np.ones(x.shape)
    grad = np.where(counted, grad, 0.0) * np.ones(x.shape)
    return _reduce(loss, grad, reduction, float(np.count_nonzero(counted)))


def binary_hessian_ref(x, target, *, from_logits=True, weight=None, pos_weight=None,
                       ignore_index=None, label_smoothing=0.0, eps=None, reduction="mean"):
    """The second derivative of each element's binary cross-entropy, float64.

    Logits: ``w (pw y + 1 - y) sigmoid(z) sigmoid(-z)``; probabilities (clipped to
    [eps, 1-eps], differentiated at the clipped value): ``w [pw y / p^2 + (1-y) / (1-p)^2]``;
    targets smoothed as in ``binary_cross_entropy_ref``; 0 for ignored elements; divided by
    the number of counted elements for ``mean``.
    """
    eps = _resolve_eps(eps, x)
    lo, hi = _clip_bounds(eps, x)
    x, ys, w, pw, counted = _binary_terms(x, target, weight, pos_weight, ignore_index,
                                          label_smoothing)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        if from_logits:
            hess = w * (pw * ys + 1.0 - ys) * sigmoid(x) * sigmoid(-x)
        else:
            pc = np.clip(x, lo, hi)
            hess = w * (pw * ys / pc**2 + (1.0 - ys) / (1.0 - pc) ** 2)
    hess = np.where(counted, hess, 0.0) * np.ones(x.shape)
    count = np.count_nonzero(counted)
    if reduction == "mean":
        return hess / count if count else hess * 0.0
    return hess


def fd_grad(f, x, h):
    """4th-order central finite-difference gradient of the scalar function `f` at `x`.

    ``(-f(x+2h) + 8 f(x+h) - 8 f(x-h) + f(x-2h)) / (12 h)`` per element, in float64.
    """
    x = np.array(x, dtype=np.float64)
    g = np.empty_like(x)
    flat, gflat = x.reshape(-1), g.reshape(-1)
    for i in range(flat.size):
        x0 = flat[i]
        vals = []
        for step in (2, 1, -1, -2):
            flat[i] = x0 + step * h
            vals.append(float(f(x)))
        flat[i] = x0
        gflat[i] = (-vals[0] + 8 * vals[1] - 8 * vals[2] + vals[3]) / (12 * h)
    return g


def ulp_distance_ok(got, exact, dtype, n_ulp):
    """True when every ``|got - exact| <= n_ulp * spacing(dtype(exact))``.

    ``spacing`` at the correctly rounded exact value, so a result that underflows to 0 is
    within one ulp of 0 (the smallest subnormal).
    """
    got = np.asarray(got, dtype=np.float64)
    exact = np.asarray(exact, dtype=np.float64)
    ulp = np.abs(np.spacing(exact.astype(dtype))).astype(np.float64)
    return bool(np.all(np.abs(got - exact) <= n_ulp * ulp))
