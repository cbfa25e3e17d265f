"""Property tests (hypothesis) of z-loss, soft-capping and focal terms over every combination
with the classic options.

Each example draws a dtype, a shape and class axis, integer labels (with ignored rows) or soft
targets, logits or probabilities, class and sample weights, label smoothing, a reduction and
any subset of the newer options (``focal_alpha`` none, one number or per class), and checks:

- loss, gradient and Hessian diagonal against PyTorch's autograd of the defining formula
  (``tests/option_reference.py``) in float64, at the computation dtype's tolerance (the
  formula's NumPy value when PyTorch is not installed), wherever the formula is finite;
- ``loss_and_grad`` equals ``loss`` and ``grad``, and ``grad_hess``'s gradient equals
  ``grad``, bitwise; in place (``out=input``, ``hess_out=input``) equals out of place;
- ``n_threads=1`` and ``n_threads=2`` agree bitwise; no input is written to.

``FASTXENT_HYPOTHESIS_EXAMPLES`` sets the number of examples per test (default 60).
"""

import functools
import os

import numpy as np
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st
from option_reference import autograd_terms, binary_terms, cross_entropy_terms, numpy_terms

import fastxent
from fastxent._core.threads import SERIAL_BELOW
from helpers import assert_close

EXAMPLES = int(os.environ.get("FASTXENT_HYPOTHESIS_EXAMPLES", "60"))
SETTINGS = settings(max_examples=EXAMPLES, deadline=None, database=None, print_blob=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@st.composite
def term_options(draw, binary):
    """Any subset of the newer options (soft-capping only with logits, z-loss only softmax)."""
    from_logits = draw(st.booleans())
    options = {"from_logits": from_logits}
    if from_logits and draw(st.booleans()):
        options["softcap"] = draw(st.floats(0.5, 50))
    if draw(st.booleans()):
        options["focal_gamma"] = draw(st.sampled_from([0.25, 0.5, 1.0, 2.0, 3.0]))
    if not binary and from_logits and draw(st.booleans()):
        options["z_loss"] = draw(st.sampled_from([1e-4, 1e-2, 0.5]))
    return options


@st.composite
def multiclass_problems(draw):
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    n_classes = draw(st.integers(2, 12))
    n_rows = draw(st.sampled_from([1, 3, 17, SERIAL_BELOW // n_classes + 5]))
    axis = draw(st.sampled_from([-1, 0]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    options = draw(term_options(binary=False))
    shape = (n_rows, n_classes) if axis == -1 else (n_classes, n_rows)
    z = rng.normal(0, draw(st.sampled_from([0.5, 3.0, 8.0])), shape)
    if options["from_logits"]:
        x = z
    else:
        e = np.exp(z - z.max(axis=axis, keepdims=True))
        x = np.clip(e / e.sum(axis=axis, keepdims=True), 1e-6, 1 - 1e-6)  # (not clipped)
    alpha = draw(st.sampled_from(["none", "one", "per_class"]))
    if alpha == "one":
        options["focal_alpha"] = draw(st.floats(0.05, 1))
    elif alpha == "per_class":
        options["focal_alpha"] = rng.uniform(0, 1, n_classes)
    if draw(st.booleans()):
        options["weight"] = rng.uniform(0.1, 3, n_classes)
    if draw(st.booleans()):
        options["sample_weight"] = rng.uniform(0, 2, n_rows)
    options["label_smoothing"] = draw(st.sampled_from([0.0, 0.0, 0.1, 1.0]))
    options["reduction"] = draw(st.sampled_from(["none", "sum", "mean"]))
    if draw(st.booleans()):
        t = rng.uniform(0, 1, shape)
        target = (t / t.sum(axis=axis, keepdims=True)).astype(dtype)
    else:
        target = rng.integers(0, n_classes, n_rows)
        if draw(st.booleans()):
            options["ignore_index"] = -1
            ignored = rng.uniform(size=n_rows) < 0.3
            ignored[0] = False                   # (every row ignored: tested elsewhere)
            target[ignored] = -1
    return x.astype(dtype), target, axis, options


@functools.cache
def _has_torch():
    """Whether PyTorch imports (scripts/sanitize.sh hides it behind a module that raises)."""
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


def _reference(formula, x, target, options):
    """``(loss, grad, hess or None)`` of the defining formula in float64."""
    if _has_torch():
        return autograd_terms(formula, x, target, **options)
    return numpy_terms(formula, x, target, **options), None, None


def _finite_where_formula_fails(ref, got):
    """`ref` with its non-finite entries replaced by fastxent's where fastxent's is finite:
    the formula's (1 - p)**gamma has an infinite slope at 1 - p = 0 for gamma < 1, and 1 - p
    rounds to 0 in a confident row (which fastxent computes from its small side)."""
    if ref is None:
        return None
    ref = np.asarray(ref, dtype=np.float64)
    got = np.asarray(got, dtype=np.float64)
    return np.where(~np.isfinite(ref) & np.isfinite(got), got, ref)


def _check_calls(module_calls, x, target, options, ref, dtype):
    loss_fn, grad_fn, both_fn, hess_fn = module_calls
    x_before, t_before = x.copy(), np.array(target, copy=True)
    loss = loss_fn(x, target, **options)
    loss2, grad = both_fn(x, target, **options)
    grad2, hess = hess_fn(x, target, **options)
    np.testing.assert_array_equal(loss2, loss)
    np.testing.assert_array_equal(grad_fn(x, target, **options), grad)
    np.testing.assert_array_equal(grad2, grad)
    in_place = x.copy()
    grad_fn(in_place, target, out=in_place, **options)
    np.testing.assert_array_equal(in_place, grad)
    in_place = x.copy()
    hess_fn(in_place, target, hess_out=in_place, **options)
    np.testing.assert_array_equal(in_place, hess)
    one = both_fn(x, target, n_threads=1, **options)
    two = both_fn(x, target, n_threads=2, **options)
    np.testing.assert_array_equal(one[0], two[0])
    np.testing.assert_array_equal(one[1], two[1])
    np.testing.assert_array_equal(x, x_before)
    np.testing.assert_array_equal(target, t_before)
    ref_loss, ref_grad, ref_hess = (_finite_where_formula_fails(r, got) for r, got in
                                    zip(ref, (loss, grad, hess), strict=True))
    rtol = {np.float32: 5e-5, np.float64: 1e-9}[dtype]
    assert_close(loss, ref_loss, dtype, rtol=rtol, what="loss")
    if ref_grad is not None:
        assert_close(grad, ref_grad, dtype, rtol=rtol, what="grad")
        assert_close(hess, ref_hess, dtype, rtol=rtol, what="hess")


@SETTINGS
@given(multiclass_problems())
def test_cross_entropy_terms(problem):
    x, target, axis, options = problem
    note(f"shape {x.shape} axis {axis} dtype {x.dtype} options {options}")
    dtype = x.dtype.type
    rows = np.moveaxis(x, axis, -1).astype(np.float64)
    row_target = target if target.dtype.kind in "iu" else np.moveaxis(target, axis, -1)
    ref_options = dict(options, eps=float(np.finfo(dtype).eps))
    ref = _reference(cross_entropy_terms, rows, row_target, ref_options)
    if axis != -1:
        ref = tuple(r if r is None or r.ndim < 2 else np.moveaxis(r, -1, axis) for r in ref)
    calls = (fastxent.cross_entropy, fastxent.cross_entropy_grad,
             fastxent.cross_entropy_loss_and_grad, fastxent.cross_entropy_grad_hess)
    _check_calls(calls, x, target, dict(options, axis=axis), ref, dtype)


@st.composite
def binary_problems(draw):
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    shape = draw(st.sampled_from([(5,), (7, 3), (SERIAL_BELOW + 9,)]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    options = draw(term_options(binary=True))
    z = rng.normal(0, draw(st.sampled_from([0.5, 3.0, 10.0])), shape)
    x = z if options["from_logits"] else np.clip(1 / (1 + np.exp(-z)), 1e-6, 1 - 1e-6)
    if draw(st.booleans()):
        options["focal_alpha"] = draw(st.floats(0, 1))
    if draw(st.booleans()):
        options["weight"] = rng.uniform(0, 2, shape)
    if draw(st.booleans()):
        options["pos_weight"] = rng.uniform(0.5, 3, shape[-1])
    options["label_smoothing"] = draw(st.sampled_from([0.0, 0.0, 0.2]))
    options["reduction"] = draw(st.sampled_from(["none", "sum", "mean"]))
    y = rng.uniform(0, 1, shape) if draw(st.booleans()) else rng.integers(0, 2, shape) * 1.0
    return x.astype(dtype), y.astype(dtype), options


@SETTINGS
@given(binary_problems())
def test_binary_cross_entropy_terms(problem):
    x, y, options = problem
    note(f"shape {x.shape} dtype {x.dtype} options {options}")
    dtype = x.dtype.type
    ref = _reference(binary_terms, x.astype(np.float64), y,
                     dict(options, eps=float(np.finfo(dtype).eps)))
    calls = (fastxent.binary_cross_entropy, fastxent.binary_cross_entropy_grad,
             fastxent.binary_cross_entropy_loss_and_grad, fastxent.binary_cross_entropy_grad_hess)
    _check_calls(calls, x, y, options, ref, dtype)
