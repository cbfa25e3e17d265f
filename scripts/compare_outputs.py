"""Record the public API's outputs over a fixed corpus, or compare two recordings bit for bit.

    python scripts/compare_outputs.py record OUT.npz     # with the fastxent to be recorded
    python scripts/compare_outputs.py compare A.npz B.npz

The corpus is deterministic (every case seeds its own generator from its name) and covers the
options of cross_entropy*, binary_cross_entropy*, softmax / log_softmax / logsumexp and
evaluate over float32 and float64, contiguous and strided layouts, short and long rows and rows
holding NaN or +-inf. Only ``import fastxent`` is used, so private modules may move. An error a
case raises is recorded as its message. FASTXENT_ISA picks the kernel set, as for any import;
the recording notes which one ran. ``compare`` exits 1 when any key is missing on one side or
differs in dtype, shape or bytes; a difference only in the sign or payload of NaNs is named as
such.
"""

import sys
import warnings
import zlib

import numpy as np

DTYPES = (np.float32, np.float64)
REDUCTIONS = ("none", "mean", "sum")
IGNORE = -100


def _rng(name):
    return np.random.default_rng(zlib.crc32(name.encode()))


def _leaves(prefix, value):
    """(key, array) pairs of a result: tuples by position, dicts by key, results as dicts."""
    if hasattr(value, "to_dict"):
        value = value.to_dict()
    if isinstance(value, dict):
        for k in sorted(value, key=str):
            yield from _leaves(f"{prefix}.{k}", value[k])
    elif isinstance(value, tuple):
        for i, v in enumerate(value):
            yield from _leaves(f"{prefix}.{i}", v)
    elif value is None:
        yield prefix, np.array("None")
    else:
        a = np.asarray(value)
        if a.dtype == object:
            a = np.array([repr(x) for x in a.reshape(-1)]).reshape(a.shape)
        yield prefix, a


# ---- inputs --------------------------------------------------------------------------------

# (name, shape, class axis): short rows (C <= 64), their boundary, long rows (several exp
# chunks, prefetched), several blocks of work, and strided classes (axis not last).
LAYOUTS = [
    ("short", (300, 10), -1),
    ("c64", (130, 64), -1),
    ("c65", (70, 65), -1),
    ("long", (12, 1100), -1),
    ("blocks", (4100, 24), -1),
    ("axis0", (7, 90), 0),
    ("ncd", (9, 6, 11), 1),
    ("ncd_long", (3, 300, 4), 1),
]


def _logits(name, shape, axis, dtype, special):
    rng = _rng(name)
    x = rng.normal(0.0, 3.0, size=shape)
    if special:
        rows = np.moveaxis(x, axis, -1)          # a view: rows along the last axis
        flat = rows.reshape(-1, rows.shape[-1]) if rows.flags.c_contiguous else None
        view = flat if flat is not None else rows.reshape(-1, rows.shape[-1]).copy()
        n = view.shape[0]
        view[0, 1] = np.nan                      # NaN in a row
        view[1 % n, :] = np.nan                  # NaN is all a row holds
        view[2 % n, 0] = np.inf                  # +inf max
        view[3 % n, :] = -np.inf                 # every logit -inf
        view[4 % n, 2] = -np.inf                 # one -inf
        view[5 % n, :] = 1.5                     # ties everywhere
        view[6 % n, 3] = 80.0                    # a confident row
        view[7 % n, :2] = [1e30, -1e30]          # huge magnitudes
        if flat is None:
            rows[...] = view.reshape(rows.shape)
    return x.astype(dtype)


def _probs(x, axis):
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")         # rows that are all NaN
        e = np.exp(x - np.nanmax(x, axis=axis, keepdims=True))
        p = e / e.sum(axis=axis, keepdims=True)
    p = np.moveaxis(p, axis, -1)
    p[..., 0, :] = 0.0                           # exact zeros and ones
    p[..., 0, 0] = 1.0
    return np.moveaxis(p, -1, axis)


def _labels(name, shape, axis, ignore):
    C = shape[axis]
    rows = tuple(d for i, d in enumerate(shape) if i != axis % len(shape))
    y = _rng(name + "/y").integers(0, C, size=rows)
    if ignore:
        y.reshape(-1)[::7] = IGNORE
    return y


def _soft(name, shape, axis, dtype):
    t = _rng(name + "/t").dirichlet(np.full(shape[axis], 0.5), size=np.prod(shape) // shape[axis])
    rows = tuple(d for i, d in enumerate(shape) if i != axis % len(shape))
    return np.moveaxis(t.reshape(rows + (shape[axis],)), -1, axis).astype(dtype)


# ---- cases ---------------------------------------------------------------------------------

def _class_inputs():
    """Yield ``(base, shape, axis, C, rows, dtype, special, logits, x)`` per class-axis input.

    ``base`` names the layout, dtype and value kind (``special``: with NaN and infinities);
    ``C`` is the class count and ``rows`` the shape without the class axis; ``x`` is logits,
    or softmax probabilities when ``logits`` is False.
    """
    for lname, shape, axis in LAYOUTS:
        C = shape[axis]
        rows = tuple(d for i, d in enumerate(shape) if i != axis % len(shape))
        for dtype in DTYPES:
            for special in (False, True):
                for logits in (True, False):
                    base = f"{lname}/{np.dtype(dtype).name}/{'special' if special else 'finite'}"
                    x = _logits(base, shape, axis, dtype, special)
                    if not logits:
                        x = _probs(x.astype(np.float64), axis).astype(dtype)
                    yield base, shape, axis, C, rows, dtype, special, logits, x


def _multiclass_cases(fx):
    options = {
        "plain": {},
        "weight": {"weight": "w"},
        "sample_weight": {"sample_weight": "s"},
        "ignore": {"ignore_index": IGNORE},
        "smooth": {"label_smoothing": 0.1},
        "all": {"weight": "w", "sample_weight": "s", "ignore_index": IGNORE,
                "label_smoothing": 0.2},
        "soft": {"soft": True},
        "soft_weight_smooth": {"soft": True, "weight": "w", "label_smoothing": 0.05},
        "soft_sample_weight": {"soft": True, "sample_weight": "s"},
    }
    for base, shape, axis, C, rows, dtype, special, logits, x in _class_inputs():
        for oname, opt in options.items():
            name = f"ce/{base}/{'logits' if logits else 'probs'}/{oname}"
            kw = {"axis": axis, "from_logits": logits, "validate": not special}
            if opt.get("soft"):
                target = _soft(name, shape, axis, dtype)
            else:
                target = _labels(name, shape, axis, "ignore_index" in opt)
            for k, v in opt.items():
                if v == "w":
                    kw[k] = _rng(name + "/w").uniform(0.2, 2.0, C)
                elif v == "s":
                    kw[k] = _rng(name + "/s").uniform(0.0, 3.0, rows)
                elif k != "soft":
                    kw[k] = v
            if not logits:
                kw["eps"] = 1e-6 if oname == "weight" else None
            threads = (1, 2) if base.startswith("blocks/") else (1,)
            for nt in threads:
                for red in REDUCTIONS:
                    key = f"{name}/{red}/t{nt}"
                    yield key + "/ce", lambda x=x, t=target, kw=kw, r=red, nt=nt: (
                        fx.cross_entropy(x, t, reduction=r, n_threads=nt, **kw))
                    yield key + "/lg", lambda x=x, t=target, kw=kw, r=red, nt=nt: (
                        fx.cross_entropy_loss_and_grad(x, t, reduction=r,
                                                       n_threads=nt, **kw))
                yield f"{name}/mean/t{nt}/grad", lambda x=x, t=target, kw=kw, nt=nt: (
                    fx.cross_entropy_grad(x, t, n_threads=nt, **kw))
                if hasattr(fx, "cross_entropy_grad_hess"):
                    yield f"{name}/mean/t{nt}/grad_hess", lambda x=x, t=target, kw=kw, nt=nt: (
                        fx.cross_entropy_grad_hess(x, t, n_threads=nt, **kw))
            if oname == "plain":                # gradient written over the input
                def in_place(x=x, t=target, kw=kw):
                    g = x.copy()
                    loss, out = fx.cross_entropy_loss_and_grad(g, t, out=g, **kw)
                    return loss, out, np.shares_memory(out, g)
                yield f"{name}/inplace", in_place


def _binary_cases(fx):
    shapes = [("flat", (1000,)), ("rows", (50, 100)), ("narrow", (200, 10)),
              ("nd", (3, 4, 70)), ("blocks", (70000,))]
    for sname, shape in shapes:
        for dtype in DTYPES:
            for special in (False, True):
                base = f"bce/{sname}/{np.dtype(dtype).name}/{'special' if special else 'finite'}"
                rng = _rng(base)
                z = rng.normal(0.0, 4.0, size=shape)
                y = rng.uniform(0.0, 1.0, size=shape)
                y.reshape(-1)[::5] = np.round(y.reshape(-1)[::5])
                p = 1.0 / (1.0 + np.exp(-z))
                p.reshape(-1)[:4] = [0.0, 1.0, 0.0, 1.0]
                if special:
                    z.reshape(-1)[:6] = [np.nan, np.inf, -np.inf, 1e30, -1e30, 0.0]
                    p.reshape(-1)[4:6] = [np.nan, 0.5]
                last = shape[-1]
                options = {
                    "plain": {},
                    "w_scalar": {"weight": 0.7},
                    "w_full": {"weight": rng.uniform(0, 2, shape)},
                    "w_col": {"weight": rng.uniform(0, 2, last)},
                    "pw_col": {"pos_weight": rng.uniform(0.5, 3, last)},
                    "pw_full": {"pos_weight": rng.uniform(0.5, 3, shape)},
                    "ignore": {"ignore_index": 1.0},
                    "smooth": {"label_smoothing": 0.1},
                    "all": {"weight": rng.uniform(0, 2, last), "pos_weight": 2.5,
                            "ignore_index": 0.0, "label_smoothing": 0.2},
                }
                if len(shape) > 1:
                    options["w_row"] = {"weight": rng.uniform(0, 2, shape[:-1] + (1,))}
                    options["all_rows"] = {"weight": rng.uniform(0, 2, shape[:-1] + (1,)),
                                           "pos_weight": rng.uniform(0.5, 3, shape),
                                           "label_smoothing": 0.05}
                for logits in (True, False):
                    x = (z if logits else p).astype(dtype)
                    yt = y.astype(dtype)
                    for oname, kw in options.items():
                        name = f"{base}/{'logits' if logits else 'probs'}/{oname}"
                        kw = dict(kw, from_logits=logits, validate=not special)
                        threads = (1, 2) if sname == "blocks" else (1,)
                        for nt in threads:
                            for red in REDUCTIONS:
                                key = f"{name}/{red}/t{nt}"
                                yield key + "/bce", lambda x=x, y=yt, kw=kw, r=red, nt=nt: (
                                    fx.binary_cross_entropy(x, y, reduction=r, n_threads=nt,
                                                            **kw))
                                yield key + "/lg", lambda x=x, y=yt, kw=kw, r=red, nt=nt: (
                                    fx.binary_cross_entropy_loss_and_grad(
                                        x, y, reduction=r, n_threads=nt, **kw))
                            yield f"{name}/sum/t{nt}/grad", lambda x=x, y=yt, kw=kw, nt=nt: (
                                fx.binary_cross_entropy_grad(x, y, reduction="sum",
                                                             n_threads=nt, **kw))
                            if hasattr(fx, "binary_cross_entropy_grad_hess"):
                                yield (f"{name}/mean/t{nt}/grad_hess",
                                       lambda x=x, y=yt, kw=kw, nt=nt: (
                                           fx.binary_cross_entropy_grad_hess(
                                               x, y, n_threads=nt, **kw)))


def _softmax_cases(fx):
    for lname, shape, axis in LAYOUTS:
        for dtype in DTYPES:
            for special in (False, True):
                base = f"{lname}/{np.dtype(dtype).name}/{'special' if special else 'finite'}"
                x = _logits(base, shape, axis, dtype, special)
                threads = (1, 2) if base.startswith("blocks/") else (1,)
                for nt in threads:
                    for fname in ("softmax", "log_softmax", "logsumexp"):
                        f = getattr(fx, fname)
                        yield f"sm/{base}/{fname}/t{nt}", lambda f=f, x=x, a=axis, nt=nt: (
                            f(x, axis=a, n_threads=nt))
                    if len(shape) == 3:
                        yield f"sm/{base}/logsumexp_axes", lambda x=x: (
                            fx.logsumexp(x, axis=(0, 2)))

                    def in_place(x=x, a=axis, nt=nt):
                        out = x.copy()
                        return fx.softmax(out, axis=a, out=out, n_threads=nt)
                    yield f"sm/{base}/softmax_inplace/t{nt}", in_place


def _evaluate_cases(fx):
    for base, shape, axis, C, rows, dtype, special, logits, x in _class_inputs():
        name = f"ev/{base}/{'logits' if logits else 'probs'}"
        y = _labels(name, shape, axis, False)
        yi = _labels(name, shape, axis, True)
        t = _soft(name, shape, axis, dtype)
        w = _rng(name + "/w").uniform(0.2, 2.0, C)
        s = _rng(name + "/s").uniform(0.0, 3.0, rows)
        cases = {
            "labels": (y, {}),
            "topk": (y, {"topk": (1, 2, 5)}),
            "weight": (y, {"weight": w, "sample_weight": s}),
            "ignore": (yi, {"ignore_index": IGNORE, "topk": (1, 3)}),
            "soft": (t, {}),
            "soft_weight": (t, {"weight": w, "sample_weight": s}),
        }
        threads = (1, 2) if base.startswith("blocks/") else (1,)
        for cname, (target, kw) in cases.items():
            kw = dict(kw, axis=axis, from_logits=logits, validate=not special)
            for nt in threads:
                key = f"{name}/{cname}/t{nt}"
                yield key + "/result", lambda x=x, t=target, kw=kw, nt=nt: (
                    fx.evaluate(x, t, n_threads=nt, **kw))

                def state(x=x, t=target, kw=kw, nt=nt):
                    kw = dict(kw)
                    sw = kw.pop("sample_weight", None)
                    ev = fx.Evaluator(n_threads=nt, **kw)
                    return ev.update(x, t, sample_weight=sw).to_dict()
                yield key + "/state", state


def _error_cases(fx):
    """Invalid inputs found by the label and range checks: the message names the first."""
    rng = _rng("errors")
    for dtype in DTYPES:
        name = f"err/{np.dtype(dtype).name}"
        x = rng.normal(size=(4100, 24)).astype(dtype)
        y = rng.integers(0, 24, 4100)
        y[[3000, 4000, 1500]] = [24, -1, 99]      # bad labels in two blocks, not in row order
        for nt in (1, 2):
            yield f"{name}/labels/t{nt}", lambda x=x, y=y, nt=nt: fx.cross_entropy(
                x, y, n_threads=nt)
            yield f"{name}/labels_ignore/t{nt}", lambda x=x, y=y, nt=nt: fx.cross_entropy(
                x, np.where(y == 99, -100, y), ignore_index=-100, n_threads=nt)
        p = rng.uniform(size=70000).astype(dtype)
        t = rng.uniform(size=70000).astype(dtype)
        t[[50000, 60000]] = [1.5, np.nan]
        for nt in (1, 2):
            yield f"{name}/targets/t{nt}", lambda p=p, t=t, nt=nt: fx.binary_cross_entropy(
                p, t, from_logits=False, n_threads=nt)
            yield f"{name}/probs/t{nt}", lambda p=p, t=t, nt=nt: fx.binary_cross_entropy(
                t, p, from_logits=False, n_threads=nt)


def cases():
    import fastxent as fx
    yield from _error_cases(fx)
    yield from _multiclass_cases(fx)
    yield from _binary_cases(fx)
    yield from _softmax_cases(fx)
    yield from _evaluate_cases(fx)


def record(path):
    import fastxent
    arrays = {"meta.isa": np.array(fastxent.config().get("isa", "unknown"))}
    n = 0
    for key, run in cases():
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            try:
                result = run()
            except Exception as exc:             # the error is part of the behaviour
                result = f"{type(exc).__name__}: {exc}"
        for k, a in _leaves(key, result):
            if k in arrays:
                raise AssertionError(f"duplicate key {k}")
            arrays[k] = a
        n += 1
    np.savez_compressed(path, **arrays)
    print(f"recorded {n} calls, {len(arrays)} arrays from {fastxent.__file__} "
          f"(kernels {arrays['meta.isa']}) -> {path}")


def _difference(x, y):
    """How arrays of equal dtype and shape but different bytes differ."""
    if x.dtype.kind != "f":
        return f"values differ ({np.sum(x != y)} elements)"
    bits = f"u{x.dtype.itemsize}"
    n = np.sum(x.reshape(-1).view(bits) != y.reshape(-1).view(bits))
    nan = np.isnan(x)
    if np.array_equal(nan, np.isnan(y)) and x[~nan].tobytes() == y[~nan].tobytes():
        return f"only the sign or payload of NaN differs ({n} elements)"
    return f"bytes differ ({n} elements)"


def compare(path_a, path_b):
    a, b = np.load(path_a), np.load(path_b)
    keys_a, keys_b = set(a.files), set(b.files)
    problems = [f"only in {path_a}: {k}" for k in sorted(keys_a - keys_b)]
    problems += [f"only in {path_b}: {k}" for k in sorted(keys_b - keys_a)]
    for k in sorted(keys_a & keys_b):
        x, y = a[k], b[k]
        if x.dtype != y.dtype or x.shape != y.shape:
            problems.append(f"{k}: {x.dtype}{x.shape} vs {y.dtype}{y.shape}")
        elif x.tobytes() != y.tobytes():         # bitwise: NaN == NaN, -0.0 != 0.0
            problems.append(f"{k}: {_difference(x, y)}")
    for p in problems:
        print(p)
    print(f"{len(keys_a & keys_b)} common keys, {len(problems)} differences "
          f"({a['meta.isa'] if 'meta.isa' in keys_a else '?'} vs "
          f"{b['meta.isa'] if 'meta.isa' in keys_b else '?'})")
    return 1 if problems else 0


def main(argv):
    if len(argv) == 2 and argv[0] == "record":
        record(argv[1])
        return 0
    if len(argv) == 3 and argv[0] == "compare":
        return compare(argv[1], argv[2])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
