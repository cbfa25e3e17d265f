#!/usr/bin/env python3
"""Atheris fuzz target over fastxent's Python API.

    pip install atheris
    python scripts/fuzz.py -max_total_time=600            # bounded run, 10 minutes
    python scripts/fuzz.py -atheris_runs=100000           # or a number of executions
    python scripts/fuzz.py corpus_dir -max_total_time=60  # keep a corpus between runs

Each input picks a public function and builds its arguments from the fuzzer's bytes: arrays
of any dtype (float32/float64/float16/int/uint/bool/complex/object/str), any small shape
(0-d, empty, C = 1), any layout (C, Fortran, strided, reversed), values from a pool with
±inf, NaN, ±1e30, subnormals and out-of-range labels, and every keyword with valid and
invalid values (weights, sample_weight, pos_weight, ignore_index, label_smoothing, eps,
reduction, axis, validate, n_threads, out: sentinel buffer, the input itself, overlapping
views, wrong shapes/dtypes, read-only).

ValueError and TypeError are the API's documented errors: expected. After one, the `out`
buffer and the input must be untouched. Any other exception, a crash (segfault, abort), or
a successful call whose result has the wrong shape/dtype is a finding: libFuzzer stops and
writes the input as crash-<sha1>.
"""

import sys

import atheris

with atheris.instrument_imports():
    import numpy as np

    import fastxent

SENTINEL = -123.5

VALUES = [0.0, -0.0, 1.0, -1.0, 0.5, 0.25, 1e-3, 3.0, -7.5, 40.0, -104.0, 710.0, 1e30, -1e30,
          1e-40, 5e-324, 1e-310, np.inf, -np.inf, np.nan, 1.0 - 2**-53, 2**-24, 1.5, -0.25]
LABELS = [0, 1, 2, 3, -1, -100, 7, 64, 2**31, -2**31, 2**62, -2**63]
DTYPES = ["float64", "float32", "float64", "float32", "float16", "int64", "int32", "uint8",
          "int8", "uint64", "bool", "complex128", "object", "U1", "longdouble"]
LABEL_DTYPES = ["int64", "int32", "int8", "uint8", "uint64", "int16", "float64", "bool",
                "object", "U1", "complex64"]
REDUCTIONS = ["mean", "sum", "none", "avg", None, "MEAN", 0]
FUNCS = ["cross_entropy", "cross_entropy_grad", "cross_entropy_loss_and_grad",
         "cross_entropy_grad_hess",
         "binary_cross_entropy", "binary_cross_entropy_grad",
         "binary_cross_entropy_loss_and_grad", "binary_cross_entropy_grad_hess", "softmax",
         "log_softmax", "logsumexp",
         "effective_n_threads"]
EXPECTED = (ValueError, TypeError)


class Gen:
    def __init__(self, data):
        self.fdp = atheris.FuzzedDataProvider(data)

    def int(self, lo, hi):
        return self.fdp.ConsumeIntInRange(lo, hi)

    def bool(self):
        return self.fdp.ConsumeBool()

    def pick(self, seq):
        return seq[self.int(0, len(seq) - 1)]

    def shape(self, min_dims=0, max_dims=3):
        nd = self.int(min_dims, max_dims)
        return tuple(self.pick([0, 1, 1, 2, 3, 4, 5, 7, 65]) for _ in range(nd))

    def layout(self, a):
        kind = self.int(0, 4)
        if a.ndim == 0 or kind <= 1:
            return a
        if kind == 2:
            return np.asfortranarray(a)
        if kind == 3:
            buf = np.zeros(a.shape[:-1] + (2 * a.shape[-1],), a.dtype)
            buf[..., ::2] = a
            return buf[..., ::2]
        return np.array(a[::-1], copy=True)[::-1]

    def values(self, shape, dtype, pool=VALUES):
        n = int(np.prod(shape))
        raw = [self.pick(pool) for _ in range(min(n, 64))]
        flat = np.resize(np.array(raw if raw else [0.0], dtype=object), n)
        with np.errstate(all="ignore"):
            if dtype == "U1":
                return np.array([str(v)[:1] for v in flat], dtype="U1").reshape(shape)
            if dtype == "object":
                return flat.reshape(shape)
            if np.dtype(dtype).kind in "iub":
                arr = np.array([_to_int(v) for v in flat], dtype=object)
                return np.array([_clip_int(v, dtype) for v in arr], dtype=dtype).reshape(shape)
            return np.array(list(flat), dtype=np.float64).astype(dtype).reshape(shape)

    def array(self, shape, dtypes=DTYPES, pool=VALUES):
        dtype = self.pick(dtypes)
        a = self.values(shape, dtype, pool)
        if self.int(0, 9) == 0:
            a = np.array(a, copy=True)
            a.flags.writeable = False
        return self.layout(a)


def _to_int(v):
    try:
        return int(v)
    except (OverflowError, ValueError):
        return 0


def _clip_int(v, dtype):
    info = np.iinfo(dtype) if np.dtype(dtype).kind in "iu" else None
    if info is None:
        return bool(v)
    return min(max(v, info.min), info.max)


def _out(g, x, shape):
    """An `out` argument: absent, a sentinel buffer, the input, or something wrong."""
    kind = g.int(0, 8)
    cdt = (x.dtype if isinstance(x, np.ndarray) and x.dtype in (np.float32, np.float64)
           else np.dtype(np.float64))
    if kind <= 2:
        return None
    if kind <= 4:
        return np.full(shape, SENTINEL, cdt)
    if kind == 5:
        return x                                      # in place (maybe not allowed)
    if kind == 6:
        return np.full(shape, SENTINEL, np.float32 if cdt == np.float64 else np.float64)
    if kind == 7 and isinstance(x, np.ndarray) and x.size > 1 and x.ndim >= 1:
        flat = x.reshape(-1) if x.flags.c_contiguous else None
        if flat is not None and flat.size > 1:
            return flat[1:]                           # overlapping view
    return np.full(shape[::-1] + (1,), SENTINEL, cdt)


def _kwargs(g, x, family):
    kw = {}
    xs = np.shape(x)
    n_classes = xs[-1] if len(xs) else 1
    for _ in range(g.int(0, 6)):
        key = g.pick(["from_logits", "weight", "sample_weight", "ignore_index",
                      "label_smoothing", "eps", "reduction", "axis", "validate", "n_threads",
                      "pos_weight"])
        if key == "from_logits":
            kw[key] = g.bool()
        elif key in ("weight", "pos_weight"):
            kind = g.int(0, 3)
            kw[key] = (g.pick([0.5, 2.0, -1.0, np.nan, 1j, "w"]) if kind == 0 else
                       g.array((n_classes,), ["float64", "float32", "int64", "complex128"])
                       if kind == 1 else g.array(g.shape(1, 3)) if kind == 2
                       else g.array(xs))
        elif key == "sample_weight":
            kw[key] = g.array(g.shape(0, 2) if g.bool() else xs[:-1], ["float64"])
        elif key == "ignore_index":
            kw[key] = g.pick(LABELS + [0.5, -1.0, np.nan, True, "x", None])
        elif key == "label_smoothing":
            kw[key] = g.pick([0.0, 0.1, 1.0, -0.1, 1.5, np.nan, "0.1", None, 1e-320])
        elif key == "eps":
            kw[key] = g.pick([None, 0.0, 1e-7, 0.25, 0.5, -1e-3, np.nan, "e", 1e-320])
        elif key == "reduction":
            kw[key] = g.pick(REDUCTIONS)
        elif key == "axis":
            kw[key] = g.pick([-1, 0, 1, 2, -2, 3, -4, 1.0, None, True])
        elif key == "validate":
            kw[key] = g.bool()
        elif key == "n_threads":
            kw[key] = g.pick([None, 1, 2, -1, 0, 3, 2.0, True, "2", 10**6, -10**6])
    if family == "binary":
        kw.pop("axis", None)
        kw.pop("sample_weight", None)
    if family == "multiclass":
        kw.pop("pos_weight", None)
    if family == "softmax":
        kw = {k: v for k, v in kw.items() if k in ("axis", "n_threads")}
    return kw


def _target(g, x, family):
    shape = np.shape(x)
    kind = g.int(0, 3)
    if family == "multiclass" and kind <= 1 and len(shape):
        return g.array(shape[:-1], LABEL_DTYPES, LABELS)
    if kind == 3:
        return g.array(g.shape(0, 3))                 # any shape: maybe a mismatch
    return g.array(shape, ["float64", "float32", "int8", "bool", "complex128", "object"],
                   [0.0, 1.0, 0.5, 0.25, -1.0, 1.5, np.nan, 1e-40, 0.999])


def _snapshot(*arrays):
    return [(a, np.array(a, copy=True)) for a in arrays if isinstance(a, np.ndarray)]


def _untouched(snap, what):
    for i, (a, before) in enumerate(snap):
        if before.dtype.kind == "O":                  # a shallow copy: same objects
            same = all(u is v for u, v in zip(a.reshape(-1), before.reshape(-1), strict=True))
        elif before.dtype.kind in "fc":
            same = np.array_equal(a, before, equal_nan=True)
        else:
            same = np.array_equal(a, before)
        if not same:
            raise AssertionError(f"{what}: argument {i} was written to before an error: "
                                 f"{before!r} -> {a!r}")


def test_one_input(data):
    g = Gen(data)
    name = g.pick(FUNCS)
    fn = getattr(fastxent, name)
    if name == "effective_n_threads":
        try:
            n = fn(g.pick([None, 1, 2, -1, -2, 0, 2.5, True, "1", 10**9, -10**9]))
        except EXPECTED:
            return
        assert isinstance(n, int) and n >= 1
        return
    family = ("softmax" if name in ("softmax", "log_softmax", "logsumexp")
              else "binary" if name.startswith("binary") else "multiclass")
    x = g.array(g.shape(0 if family == "binary" else 0, 3))
    if g.int(0, 15) == 0:
        x = x.tolist()                                # plain lists work too
    kw = _kwargs(g, x, family)
    args = (x,) if family == "softmax" else (x, _target(g, x, family))
    wants_out = name.endswith(("grad", "grad_hess")) or family == "softmax"
    if wants_out:
        xs = np.shape(x)
        out_shape = xs[:-1] if name == "logsumexp" and len(xs) else xs
        kw["out"] = _out(g, x, out_shape)
        if name.endswith("grad_hess"):
            kw["hess_out"] = _out(g, x, out_shape)
    snap = _snapshot(x, *args[1:], kw.get("out"), kw.get("hess_out"), kw.get("weight"),
                     kw.get("sample_weight"), kw.get("pos_weight"))
    try:
        with np.errstate(all="ignore"):
            result = fn(*args, **kw)
    except EXPECTED:
        _untouched(snap, name)
        return
    _check_result(name, x, kw, result)


def _check_result(name, x, kw, result):
    x = np.asarray(x)
    cdt = x.dtype if x.dtype in (np.float32, np.float64) else np.dtype(np.float64)
    grads = []
    if name.endswith("loss_and_grad"):
        loss, grad = result
        grads.append(grad)
    elif name.endswith("grad"):
        grads.append(result)
    elif name.endswith("grad_hess"):
        grads += list(result)
    elif name in ("softmax", "log_softmax"):
        grads.append(result)
    else:
        loss = result
    for g in grads:
        assert isinstance(g, np.ndarray) and g.shape == x.shape and g.dtype == cdt, (
            name, g.shape, g.dtype, x.shape, cdt)
    for g, key in zip(grads, ("out", "hess_out"), strict=False):
        if kw.get(key) is not None:
            assert g is kw[key]
    if name == "logsumexp":
        assert result.dtype == cdt and result.ndim == max(x.ndim - 1, 0)
    if "loss" in locals() and name not in ("softmax", "log_softmax", "logsumexp"):
        assert np.asarray(loss).dtype == cdt, (name, np.asarray(loss).dtype, cdt)


def main():
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
