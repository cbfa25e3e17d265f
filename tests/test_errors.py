"""Every error the API raises: type, message, and nothing written before it is raised.

Each case is called three ways: the loss alone, the gradient into a sentinel-filled ``out``,
and the gradient in place (``out=input``, when the input is a float64 C-contiguous buffer).
After the error the sentinel ``out`` and the in-place input must be unchanged.
"""

import numpy as np
import pytest

import fastxent
from helpers import raises_untouched

SENTINEL = -123.5


def _x(shape=(4, 3)):
    return np.linspace(-1.0, 1.0, int(np.prod(shape))).reshape(shape)


def _p(shape=(4, 3)):
    return np.full(shape, 1.0 / shape[-1])


Y = np.array([0, 2, 1, 1])
S = np.full((4, 3), 1.0 / 3)

# (id, input, target, kwargs, exception, message fragments)
MULTICLASS_ERRORS = [
    ("soft_shape", _x(), np.zeros((4, 2)), {}, ValueError, ["(4, 3)", "(4, 2)"]),
    ("label_shape", _x(), np.array([0, 1, 2, 0, 1]), {}, ValueError, ["(4,)", "(5,)"]),
    ("float_labels_hint", _x(), np.array([0.0, 1.0, 2.0, 0.0]), {}, ValueError,
     ["(4, 3)", "(4,)", "integer dtype"]),
    ("label_equal_C", _x(), np.array([0, 1, 3, 0]), {}, ValueError,
     ["target[2] = 3", "[0, 3)"]),
    ("label_negative", _x(), np.array([0, -1, 2, 0], dtype=np.int8), {}, ValueError,
     ["target[1] = -1", "[0, 3)"]),
    ("label_uint64_huge", _x(), np.array([0, 2**64 - 1, 2, 0], dtype=np.uint64), {},
     ValueError, ["target[1] = 18446744073709551615"]),
    ("label_uint64_2p63", _x(), np.array([0, 1, 2**63, 0], dtype=np.uint64), {},
     ValueError, ["target[2] = 9223372036854775808"]),
    ("label_int64_min", _x(), np.array([0, 1, 2, -2**63]), {}, ValueError,
     ["target[3] = -9223372036854775808"]),
    ("label_2d_position", _x((2, 3, 3)), np.array([[0, 1, 2], [2, 1, 7]]), {}, ValueError,
     ["target[1, 2] = 7"]),
    ("label_axis1_position", _x((2, 3, 2)), np.array([[0, 1], [5, 1]]), {"axis": 1},
     ValueError, ["target[1, 0] = 5"]),
    ("label_first_bad_reported", _x(), np.array([0, 9, -4, 0]), {}, ValueError,
     ["target[1] = 9"]),
    ("label_bad_with_ignore", _x(), np.array([0, -100, -3, 0]), {"ignore_index": -100},
     ValueError, ["target[2] = -3", "ignore_index=-100"]),
    ("prob_above_one", _p(), Y, {"from_logits": False, "input_patch": ((1, 2), 1.5)},
     ValueError, ["input[1, 2]", "1.5", "[0, 1]"]),
    ("prob_negative", _p(), Y, {"from_logits": False, "input_patch": ((3, 0), -0.25)},
     ValueError, ["input[3, 0]", "-0.25"]),
    ("prob_nan", _p(), Y, {"from_logits": False, "input_patch": ((2, 1), np.nan)},
     ValueError, ["input[2, 1]", "nan"]),
    ("soft_above_one", _x(), S, {"target_patch": ((0, 1), 1.25)}, ValueError,
     ["target[0, 1]", "1.25"]),
    ("soft_negative", _x(), S, {"target_patch": ((3, 2), -0.5)}, ValueError,
     ["target[3, 2]", "-0.5"]),
    ("soft_nan", _x(), S, {"target_patch": ((1, 1), np.nan)}, ValueError,
     ["target[1, 1]", "nan"]),
    ("reduction_bad", _x(), Y, {"reduction": "avg"}, ValueError, ["reduction", "'avg'"]),
    ("reduction_none_object", _x(), Y, {"reduction": None}, ValueError, ["reduction"]),
    ("eps_negative", _p(), Y, {"from_logits": False, "eps": -1e-3}, ValueError, ["eps"]),
    ("eps_half", _p(), Y, {"from_logits": False, "eps": 0.5}, ValueError, ["eps", "0.5"]),
    ("eps_nan", _p(), Y, {"from_logits": False, "eps": float("nan")}, ValueError, ["eps"]),
    ("eps_str", _p(), Y, {"from_logits": False, "eps": "tiny"}, ValueError, ["eps"]),
    ("smoothing_negative", _x(), Y, {"label_smoothing": -0.1}, ValueError,
     ["label_smoothing"]),
    ("smoothing_above_one", _x(), Y, {"label_smoothing": 1.5}, ValueError,
     ["label_smoothing"]),
    ("smoothing_nan", _x(), Y, {"label_smoothing": float("nan")}, ValueError,
     ["label_smoothing"]),
    ("n_threads_zero", _x(), Y, {"n_threads": 0}, ValueError, ["n_threads"]),
    ("n_threads_float", _x(), Y, {"n_threads": 1.5}, TypeError, ["n_threads"]),
    ("n_threads_bool", _x(), Y, {"n_threads": True}, TypeError, ["n_threads"]),
    ("n_threads_str", _x(), Y, {"n_threads": "2"}, TypeError, ["n_threads"]),
    ("ignore_with_soft", _x(), S, {"ignore_index": 0}, ValueError, ["ignore_index", "soft"]),
    ("ignore_float", _x(), Y, {"ignore_index": 1.5}, TypeError, ["ignore_index"]),
    ("ignore_bool", _x(), Y, {"ignore_index": True}, TypeError, ["ignore_index"]),
    ("weight_shape", _x(), Y, {"weight": np.ones(4)}, ValueError, ["(3,)", "(4,)"]),
    ("weight_2d", _x(), Y, {"weight": np.ones((1, 3))}, ValueError, ["(3,)", "(1, 3)"]),
    ("weight_complex", _x(), Y, {"weight": np.ones(3, complex)}, TypeError, ["weight"]),
    ("sample_weight_shape", _x(), Y, {"sample_weight": np.ones(3)}, ValueError,
     ["(4,)", "(3,)"]),
    ("sample_weight_str", _x(), Y, {"sample_weight": np.array(["a"] * 4)}, TypeError,
     ["sample_weight"]),
    ("input_complex", _x().astype(complex), Y, {}, TypeError, ["real", "complex"]),
    ("input_object", _x().astype(object), Y, {}, TypeError, ["real", "object"]),
    ("input_bool", _x() > 0, Y, {}, TypeError, ["real", "bool"]),
    ("input_str", np.array([["a", "b", "c"]] * 4), Y, {}, TypeError, ["real"]),
    ("target_bool", _x(), np.array([True, False, True, True]), {}, TypeError, ["target"]),
    ("target_complex", _x(), S.astype(complex), {}, TypeError, ["target", "complex"]),
    ("target_str", _x(), np.array(["0", "1", "2", "0"]), {}, TypeError, ["target"]),
    ("input_0d", np.array(1.0), np.array(0), {}, ValueError, ["0-d"]),
    ("no_classes", np.zeros((4, 0)), np.zeros(4, int), {}, ValueError, ["no classes"]),
    ("axis_out_of_range", _x(), Y, {"axis": 2}, ValueError, ["axis 2", "(4, 3)"]),
    ("axis_float", _x(), Y, {"axis": 1.0}, TypeError, ["axis"]),
]

BINARY_ERRORS = [
    ("target_shape", _x(), np.zeros((4, 2)), {}, ValueError, ["(4, 3)", "(4, 2)"]),
    ("target_above_one", _x(), np.full((4, 3), 0.5), {"target_patch": ((2, 2), 1.5)},
     ValueError, ["target[2, 2]", "1.5"]),
    ("target_negative", _x(), np.full((4, 3), 0.5), {"target_patch": ((0, 0), -1.0)},
     ValueError, ["target[0, 0]", "-1.0"]),
    ("target_nan", _x(), np.full((4, 3), 0.5), {"target_patch": ((3, 1), np.nan)},
     ValueError, ["target[3, 1]", "nan"]),
    ("target_other_than_ignore", _x(), np.full((4, 3), 0.5),
     {"ignore_index": -1, "target_patch": ((1, 1), -2.0)}, ValueError, ["target[1, 1]"]),
    ("prob_above_one", _p(), np.full((4, 3), 0.5),
     {"from_logits": False, "input_patch": ((0, 2), 1.0000001)}, ValueError, ["input[0, 2]"]),
    ("prob_nan", _p(), np.full((4, 3), 0.5),
     {"from_logits": False, "input_patch": ((1, 0), np.nan)}, ValueError, ["input[1, 0]"]),
    ("weight_not_broadcast", _x(), np.zeros((4, 3)), {"weight": np.ones(4)}, ValueError,
     ["(4,)", "(4, 3)"]),
    ("weight_bigger", _x(), np.zeros((4, 3)), {"weight": np.ones((2, 4, 3))}, ValueError,
     ["(2, 4, 3)", "(4, 3)"]),
    ("pos_weight_not_broadcast", _x(), np.zeros((4, 3)), {"pos_weight": np.ones(2)},
     ValueError, ["pos_weight", "(2,)", "(4, 3)"]),
    ("weight_complex", _x(), np.zeros((4, 3)), {"weight": 1j}, TypeError, ["weight"]),
    ("ignore_nan", _x(), np.zeros((4, 3)), {"ignore_index": float("nan")}, ValueError,
     ["ignore_index"]),
    ("ignore_str", _x(), np.zeros((4, 3)), {"ignore_index": "-1"}, TypeError,
     ["ignore_index"]),
    ("reduction_bad", _x(), np.zeros((4, 3)), {"reduction": "MEAN"}, ValueError,
     ["reduction"]),
    ("eps_negative", _p(), np.zeros((4, 3)), {"from_logits": False, "eps": -0.1}, ValueError,
     ["eps"]),
    ("eps_half", _p(), np.zeros((4, 3)), {"from_logits": False, "eps": 0.75}, ValueError,
     ["eps"]),
    ("eps_nan", _p(), np.zeros((4, 3)), {"from_logits": False, "eps": float("nan")},
     ValueError, ["eps"]),
    ("smoothing_bad", _x(), np.zeros((4, 3)), {"label_smoothing": 2.0}, ValueError,
     ["label_smoothing"]),
    ("n_threads_zero", _x(), np.zeros((4, 3)), {"n_threads": 0}, ValueError, ["n_threads"]),
    ("n_threads_float", _x(), np.zeros((4, 3)), {"n_threads": 2.0}, TypeError,
     ["n_threads"]),
    ("input_complex", _x().astype(complex), np.zeros((4, 3)), {}, TypeError, ["real"]),
    ("input_object", _x().astype(object), np.zeros((4, 3)), {}, TypeError, ["real"]),
    ("input_bool", _x() > 0, np.zeros((4, 3)), {}, TypeError, ["real"]),
    ("input_str", np.array([["a", "b", "c"]] * 4), np.zeros((4, 3)), {}, TypeError,
     ["real"]),
    ("target_complex", _x(), np.zeros((4, 3), complex), {}, TypeError, ["target"]),
    ("target_str", _x(), np.array([["0", "1", "1"]] * 4), {}, TypeError, ["target"]),
]

FAMILIES = {
    "multiclass": (fastxent.cross_entropy, fastxent.cross_entropy_grad,
                   fastxent.cross_entropy_loss_and_grad, MULTICLASS_ERRORS),
    "binary": (fastxent.binary_cross_entropy, fastxent.binary_cross_entropy_grad,
               fastxent.binary_cross_entropy_loss_and_grad, BINARY_ERRORS),
}


def _cases():
    for family, (*_, errors) in FAMILIES.items():
        for case in errors:
            yield pytest.param(family, *case[1:], id=f"{family}-{case[0]}")


def _patched(x, t, kwargs):
    x, t, kwargs = np.array(x, copy=True), np.array(t, copy=True), dict(kwargs)
    if "input_patch" in kwargs:
        index, value = kwargs.pop("input_patch")
        x[index] = value
    if "target_patch" in kwargs:
        index, value = kwargs.pop("target_patch")
        t[index] = value
    return x, t, kwargs


@pytest.mark.parametrize("family, x, t, kwargs, exc, fragments", list(_cases()))
def test_error(family, x, t, kwargs, exc, fragments):
    """The error is raised by all three functions; `out` and an in-place input untouched."""
    loss_fn, grad_fn, both_fn, _ = FAMILIES[family]
    x, t, kwargs = _patched(x, t, kwargs)
    raises_untouched(loss_fn, (x, t), kwargs, exc, fragments, buffers=[x, t])
    out_ok = x.dtype == np.float64 and x.ndim > 0
    out = np.full(x.shape, SENTINEL) if out_ok else None
    for fn in (grad_fn, both_fn):
        raises_untouched(fn, (x, t), dict(kwargs, out=out), exc, fragments,
                         buffers=[x, t] + ([out] if out_ok else []))
        if out_ok:                        # in place: the input is the sentinel buffer
            raises_untouched(fn, (x, t), dict(kwargs, out=x), exc, fragments, buffers=[x, t])


def test_validate_false_accepts_out_of_range_probabilities():
    """validate=False skips the [0, 1] check (the kernel clips)."""
    x = np.array([[1.5, -0.5, 0.2]])
    loss = fastxent.cross_entropy(x, np.array([0]), from_logits=False, validate=False)
    assert float(loss) == pytest.approx(-np.log1p(-np.finfo(np.float64).eps), abs=1e-15)
    bl = fastxent.binary_cross_entropy(np.array([1.5]), np.array([2.0]), from_logits=False,
                                       validate=False, reduction="sum")
    assert np.isfinite(bl)


# ---- out= errors --------------------------------------------------------------------------


def _out_cases():
    yield "not_ndarray", lambda x, t: [[0.0] * 3] * 4, TypeError, ["out", "list"]
    yield "wrong_shape", lambda x, t: np.full((3, 4), SENTINEL), ValueError, ["(4, 3)", "(3, 4)"]
    yield "wrong_dtype", lambda x, t: np.full((4, 3), SENTINEL, np.float32), ValueError, [
        "float64", "float32"]
    yield "non_contiguous", lambda x, t: np.full((4, 6), SENTINEL)[:, ::2], ValueError, [
        "C-contiguous"]
    yield "fortran", lambda x, t: np.asfortranarray(np.full((4, 3), SENTINEL)), ValueError, [
        "C-contiguous"]

    def read_only(x, t):
        out = np.full((4, 3), SENTINEL)
        out.flags.writeable = False
        return out
    yield "read_only", read_only, ValueError, ["writeable"]
    yield "overlap_target", lambda x, t: t, ValueError, ["overlap", "target"]


@pytest.mark.parametrize("family", ["multiclass", "binary"])
@pytest.mark.parametrize("name, make_out, exc, fragments",
                         [pytest.param(*c, id=c[0]) for c in _out_cases()])
def test_out_errors(family, name, make_out, exc, fragments):
    """A bad `out` raises before anything is written (out and input untouched)."""
    _, grad_fn, both_fn, _ = FAMILIES[family]
    x = _x()
    t = np.full((4, 3), 1.0 / 3)            # soft targets / binary targets: float64
    out = make_out(x, t)
    for fn in (grad_fn, both_fn):
        raises_untouched(fn, (x, t), {"out": out}, exc, fragments,
                         buffers=[x, t] + ([out] if isinstance(out, np.ndarray) else []))


@pytest.mark.parametrize("family", ["multiclass", "binary"])
@pytest.mark.parametrize("shift", [1, -1, 3])
def test_out_partially_overlapping_input(family, shift):
    """`out` overlapping the input without being it is an error; both untouched."""
    _, grad_fn, both_fn, _ = FAMILIES[family]
    buf = np.linspace(-1.0, 1.0, 12 + abs(shift))
    if shift > 0:
        x, out = buf[shift:].reshape(4, 3), buf[:12].reshape(4, 3)
    else:
        x, out = buf[:12].reshape(4, 3), buf[-shift:].reshape(4, 3)
    t = np.array([0, 1, 2, 1]) if family == "multiclass" else np.zeros((4, 3))
    for fn in (grad_fn, both_fn):
        raises_untouched(fn, (x, t), {"out": out}, ValueError, ["overlaps the input"],
                         buffers=[buf])


def test_out_is_a_reshaped_view_of_input():
    """A view of the input with the same start but another shape is not `out=input`."""
    x = _x((4, 3))
    out = x.reshape(3, 4)
    raises_untouched(fastxent.cross_entropy_grad, (x, np.array([0, 1, 2, 1])), {"out": out},
                     ValueError, ["(4, 3)", "(3, 4)"], buffers=[x])


@pytest.mark.parametrize("which", ["weight", "sample_weight"])
def test_out_overlapping_weights(which):
    """`out` must not alias the class or sample weights."""
    x = _x((3, 3))
    buf = np.full((3, 3), 0.5)
    kwargs = {which: buf[0]}                 # a view into out: shape (3,) fits both
    raises_untouched(fastxent.cross_entropy_grad, (x, np.array([0, 1, 2])),
                     dict(kwargs, out=buf), ValueError, ["overlap"], buffers=[x, buf])


def test_binary_out_overlapping_weight():
    """Binary: `out` must not alias the weight or pos_weight arrays."""
    x = _x((3, 4))
    w = np.full((3, 4), 0.5)
    raises_untouched(fastxent.binary_cross_entropy_grad, (x, np.zeros((3, 4))),
                     {"weight": w, "out": w}, ValueError, ["overlap"], buffers=[x, w])
    raises_untouched(fastxent.binary_cross_entropy_grad, (x, np.zeros((3, 4))),
                     {"pos_weight": w, "out": w}, ValueError, ["overlap"], buffers=[x, w])


def test_in_place_error_on_huge_label_leaves_input():
    """A bad label found by the kernel-side check still leaves an in-place input untouched,
    also above the serial threshold (labels checked in parallel)."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(20000, 3))
    y = rng.integers(0, 3, size=20000).astype(np.uint64)
    y[12345] = 2**64 - 5
    raises_untouched(fastxent.cross_entropy_grad, (x, y), {"out": x, "n_threads": 2},
                     ValueError, ["target[12345] = 18446744073709551611"], buffers=[x])
