"""Independent float64 NumPy reference for ``fastxent.evaluate``.

Written from ``docs/evaluation.md``, not from fastxent's kernels: plain NumPy in float64.
:func:`reference_evaluate` returns a plain dict with the keys of
``EvaluationResult.to_dict()``.

Definitions used (see the docs):

- ``p`` is ``softmax(x)`` for logits (computed in float64, max subtracted), or the
  probabilities as given. The entropy takes ``log`` of ``p`` clipped to ``[eps, 1 - eps]``
  (so ``0 log 0 = 0``); the clip bounds are rounded to the computation dtype.
- ``loss`` is ``cross_entropy(..., reduction="mean")``: PyTorch class-weight semantics for
  labels (divide by ``sum s_i w[y_i]``), divide by ``sum s_i`` for soft targets.
- ``rank_i = #{c : x_c > x_y} + #{c < y : x_c = x_y}``, computed as the position of ``y`` in a
  stable argsort of ``-x`` (ties ordered by class index).
- the confidence is ``max_c p_c``, the prediction ``argmax_c x_c`` (first index); bin
  ``b = searchsorted(edges[1:-1], conf, side="left")`` with ``edges = arange(16) / 15``.
- a counted row that holds NaN makes every metric NaN; ``count`` / ``weight_sum`` still count it.
"""

import numpy as np

__all__ = ["EDGES", "N_BINS", "compute_dtype", "rank_stable", "rank_counting",
           "reference_evaluate", "rows_of", "confidence_of", "reference_rows", "ratio_se",
           "wilson"]

N_BINS = 15
EDGES = np.arange(N_BINS + 1) / N_BINS


def compute_dtype(x):
    """float32 and float64 stay, every other real dtype computes in float64."""
    dt = np.asarray(x).dtype
    return dt if dt in (np.float32, np.float64) else np.dtype(np.float64)


def rows_of(a, axis, n_classes=None):
    """The array `a` (classes along `axis`) as a float64 (rows, C) matrix, rows in C order."""
    a = np.moveaxis(np.asarray(a), axis, -1)
    c = a.shape[-1] if n_classes is None else n_classes
    return a.reshape(-1, c).astype(np.float64)


def rank_stable(z, y):
    """Rank of class ``y[i]`` in row ``z[i]``: its position in a stable sort of ``-z``."""
    z = np.asarray(z, dtype=np.float64)
    y = np.asarray(y, dtype=np.int64)
    if z.shape[0] == 0:
        return np.zeros(0, np.int64)
    order = np.argsort(-z, axis=1, kind="stable")
    return np.argmax(order == y[:, None], axis=1).astype(np.int64)


def rank_counting(z, y):
    """``#{c : z_c > z_y} + #{c < y : z_c = z_y}`` (the documented formula, by counting)."""
    z = np.asarray(z, dtype=np.float64)
    y = np.asarray(y, dtype=np.int64)
    zy = z[np.arange(z.shape[0]), y][:, None]
    cls = np.arange(z.shape[1])[None, :]
    return (np.sum(z > zy, axis=1) + np.sum((z == zy) & (cls < y[:, None]), axis=1)).astype(
        np.int64)


def _softmax_parts(z):
    """Row max ``m``, ``e = exp(z - m)``, and ``S - 1`` (the sum without the first maximum)."""
    m = np.max(z, axis=1, keepdims=True)
    with np.errstate(invalid="ignore", over="ignore"):
        e = np.exp(z - m)
    first = np.argmax(z, axis=1)
    e_rest = e.copy()
    e_rest[np.arange(z.shape[0]), first] = 0.0     # exp(0) = 1 exactly at the first maximum
    s_minus_1 = np.sum(e_rest, axis=1)
    return m[:, 0], e, s_minus_1


def confidence_of(x, from_logits=True, axis=-1):
    """The confidence ``max_c p_c`` of every row, float64 (on the values as the kernel sees
    them, upcast)."""
    z = rows_of(x, axis)
    if z.shape[0] == 0:
        return np.zeros(0)
    if from_logits:
        _, e, s1 = _softmax_parts(z)
        return 1.0 / (1.0 + s1)
    return np.max(z, axis=1)


def reference_evaluate(x, target, *, from_logits=True, topk=(1, 5), weight=None,
                       sample_weight=None, ignore_index=None, eps=None, axis=-1):
    """Every metric of ``fastxent.evaluate`` in float64, as a plain dict."""
    x = np.asarray(x)
    cdt = compute_dtype(x)
    eps = float(np.finfo(cdt).eps) if eps is None else float(eps)
    lo = float(cdt.type(eps))
    hi = float(cdt.type(1) - cdt.type(eps))
    ks = sorted(set(int(k) for k in topk))

    n_classes = x.shape[axis]
    z_all = rows_of(x.astype(cdt), axis, n_classes)   # the values the kernel computes on
    n_rows = z_all.shape[0]
    s_all = (np.ones(n_rows) if sample_weight is None
             else np.asarray(sample_weight, dtype=np.float64).reshape(-1))
    w = np.ones(n_classes) if weight is None else np.asarray(weight, np.float64)
    # the kernel sees the class weights in the computation dtype
    w = w.astype(cdt).astype(np.float64)
    target = np.asarray(target)
    soft = target.dtype.kind == "f"

    if soft:
        counted = np.ones(n_rows, bool)
        t_all = rows_of(target.astype(cdt), axis, n_classes)
    else:
        y_all = target.reshape(-1).astype(np.int64)
        counted = (np.ones(n_rows, bool) if ignore_index is None
                   else y_all != int(ignore_index))
    z = z_all[counted]
    s = s_all[counted]
    n = z.shape[0]
    W = float(np.sum(s))

    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        # probabilities and log-probabilities
        if from_logits:
            if n:
                m, e, s1 = _softmax_parts(z)
                lse = m + np.log1p(s1)
                p = e / (1.0 + s1)[:, None]
                logp = z - lse[:, None]
            else:
                p = logp = np.zeros((0, n_classes))
        else:
            p = z
            logp = np.log(np.clip(z, lo, hi))
        logp_clipped = np.log(np.clip(p, lo, hi))

        # loss
        if soft:
            t = t_all[counted]
            a = (w[None, :] * t) * s[:, None]
            per_row = np.sum(np.where(a == 0, 0.0, a * -logp), axis=1)
            denominator = W
            onehot = t
        else:
            y = y_all[counted]
            idx = np.arange(n)
            if from_logits and n:
                # (m - z_y) + log1p(S - 1): exact even when the loss is tiny
                nll = (m - z[idx, y]) + np.log1p(s1)
            else:
                nll = -logp[idx, y] if n else np.zeros(0)
            per_row = s * w[y] * nll
            denominator = float(np.sum(s * w[y]))
            onehot = np.zeros((n, n_classes))
            onehot[idx, y] = 1.0
        loss = float(np.sum(per_row)) / denominator if denominator != 0 else float("nan")

        # entropy and Brier score
        H = -np.sum(p * logp_clipped, axis=1)
        brier_rows = np.sum((p - onehot) ** 2, axis=1)
        entropy = float(np.sum(s * H)) / W if W != 0 else float("nan")
        brier = float(np.sum(s * brier_rows)) / W if W != 0 else float("nan")

        result = {
            "loss": loss,
            "perplexity": float(np.exp(loss)),
            "entropy": entropy,
            "brier": brier,
            "count": int(n),
            "weight_sum": W,
        }
        if soft:
            result.update(accuracy=None, topk=None, ece=None, ece_bins=None)
        else:
            rank = rank_stable(z, y)
            topk_values = {k: (float(np.sum(s * (rank < k))) / W if W != 0 else float("nan"))
                           for k in ks}
            correct = (rank == 0).astype(np.float64)
            conf = np.max(p, axis=1) if n else np.zeros(0)
            b = np.searchsorted(EDGES[1:-1], conf, side="left")
            Wb = np.bincount(b, weights=s, minlength=N_BINS).astype(np.float64)
            Kb = np.bincount(b, weights=s * conf, minlength=N_BINS).astype(np.float64)
            Ab = np.bincount(b, weights=s * correct, minlength=N_BINS).astype(np.float64)
            ece = float(np.sum(np.abs(Ab - Kb))) / W if W != 0 else float("nan")
            result.update(
                accuracy=(float(np.sum(s * correct)) / W if W != 0 else float("nan")),
                topk=topk_values,
                ece=ece,
                ece_bins={"edges": EDGES.tolist(), "weight": Wb.tolist(),
                          "confidence": (Kb / Wb).tolist(), "accuracy": (Ab / Wb).tolist()},
            )

    # a counted row holding NaN makes every metric NaN
    has_nan = bool(n) and (bool(np.isnan(z).any())
                           or (soft and bool(np.isnan(t_all[counted]).any())))
    if has_nan:
        for key in ("loss", "perplexity", "entropy", "brier", "accuracy", "ece"):
            if result[key] is not None:
                result[key] = float("nan")
        if result["topk"] is not None:
            result["topk"] = {k: float("nan") for k in result["topk"]}
        # (the bins are not specified then: the tests do not compare them)
    return result


# --------------------------------------------------------------------------------------------
# Per-row values and the statistics of the interpretation (loss_se, intervals, baselines)


def reference_rows(x, target, *, from_logits=True, weight=None, sample_weight=None,
                   ignore_index=None, eps=None, axis=-1):
    """Every counted row's values in float64, as a dict of arrays (rows in C order).

    ``counted`` (all rows) marks the rows that count; every other array holds the counted rows
    only: ``s`` the sample weight, ``y`` the label (None for soft targets), ``t`` the soft
    target (None for labels), ``w_y`` the row's share of the loss's denominator before ``s``
    (its class weight; 1 for soft targets), ``loss`` the class-weighted loss (``w_y * ce`` for
    labels, ``Σ_c w_c t_c (-log p_c)`` for soft targets), ``ce`` the cross-entropy without
    class weights, ``p``, ``prediction`` (first arg-max), ``rank``, ``correct`` (rank 0),
    ``confidence``, ``entropy``, ``brier``, ``target_entropy`` (soft targets, else None) and
    ``onehot`` (the target as a distribution).
    """
    x = np.asarray(x)
    cdt = compute_dtype(x)
    eps = float(np.finfo(cdt).eps) if eps is None else float(eps)
    lo, hi = float(cdt.type(eps)), float(cdt.type(1) - cdt.type(eps))
    n_classes = x.shape[axis]
    z_all = rows_of(x.astype(cdt), axis, n_classes)
    n_all = z_all.shape[0]
    s_all = (np.ones(n_all) if sample_weight is None
             else np.asarray(sample_weight, dtype=np.float64).reshape(-1))
    w = (np.ones(n_classes) if weight is None
         else np.asarray(weight, np.float64).astype(cdt).astype(np.float64))
    target = np.asarray(target)
    soft = target.dtype.kind == "f"
    if soft:
        counted = np.ones(n_all, bool)
        t = rows_of(target.astype(cdt), axis, n_classes)
        y = None
    else:
        y_all = target.reshape(-1).astype(np.int64)
        counted = (np.ones(n_all, bool) if ignore_index is None
                   else y_all != int(ignore_index))
        y = y_all[counted]
        t = None
    z, s = z_all[counted], s_all[counted]
    n = z.shape[0]
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        if from_logits:
            m = np.max(z, axis=1, keepdims=True) if n else np.zeros((0, 1))
            e = np.exp(z - m)
            p = e / e.sum(axis=1, keepdims=True)
            logp = (z - m) - np.log(e.sum(axis=1, keepdims=True))
            entropy = -np.sum(np.where(p > 0, p * logp, 0.0), axis=1)
        else:
            p = z
            logp = np.log(np.clip(z, lo, hi))
            entropy = -np.sum(p * logp, axis=1)
        if soft:
            onehot = t
            loss = np.sum(np.where(t == 0, 0.0, w * t * -logp), axis=1)
            ce = np.sum(np.where(t == 0, 0.0, t * -logp), axis=1)
            w_y = np.ones(n)
            target_entropy = -np.sum(np.where(t > 0, t * np.log(np.where(t > 0, t, 1.0)), 0.0),
                                     axis=1)
            rank = np.full(n, -1)
        else:
            onehot = np.zeros((n, n_classes))
            onehot[np.arange(n), y] = 1.0
            ce = -logp[np.arange(n), y] if n else np.zeros(0)
            w_y = w[y]
            loss = w_y * ce
            target_entropy = None
            rank = rank_stable(z, y)
        brier = np.sum((p - onehot) ** 2, axis=1)
    return {
        "counted": counted, "s": s, "y": y, "t": t, "w_y": w_y, "loss": loss, "ce": ce,
        "p": p, "prediction": (np.argmax(z, axis=1) if n else np.zeros(0, np.int64)),
        "rank": rank, "correct": (rank == 0).astype(np.float64),
        "confidence": (np.max(p, axis=1) if n else np.zeros(0)), "entropy": entropy,
        "brier": brier, "target_entropy": target_entropy, "onehot": onehot,
    }


def ratio_se(a, b):
    """The delta-method standard error of ``Σa / Σb`` over rows: ``sqrt(n / (n - 1) Σ(a -
    R b)²) / |Σb|`` with ``R = Σa / Σb``, in two passes; NaN below two rows or for Σb = 0."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    n = a.size
    if n < 2 or b.sum() == 0:
        return float("nan")
    r = a.sum() / b.sum()
    return float(np.sqrt(n / (n - 1) * np.sum((a - r * b) ** 2)) / abs(b.sum()))


def wilson(p, n):
    """Wilson's 95 % score interval of the proportion p over n rows (the textbook formula)."""
    from scipy.stats import norm
    z = norm.ppf(0.975)
    center = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return (max(center - half, 0.0), min(center + half, 1.0))


def spec_options(rng, spec, n_rows, n_classes):
    """The keyword options a test case's `spec` asks for: ``"w"`` class weights in [0.2, 2],
    ``"s"`` sample weights in [0, 3) with every seventh 0, any other value as given (the
    ``"soft"`` flag is not an option)."""
    kw = {}
    for key, value in spec.items():
        if value == "w":
            kw[key] = rng.uniform(0.2, 2.0, n_classes)
        elif value == "s":
            s = rng.uniform(0.0, 3.0, n_rows)
            s[::7] = 0.0
            kw[key] = s
        elif key != "soft":
            kw[key] = value
    return kw


def rows_for(x, target, kw, from_logits):
    """``reference_rows`` of a case with the options `kw` (those the rows depend on)."""
    return reference_rows(x, target, from_logits=from_logits,
                          **{k: v for k, v in kw.items()
                             if k in ("weight", "sample_weight", "ignore_index")})
