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


# ---- the remaining bad inputs ----------------------------------------------------------
# (softmax family, NaN labels, object targets, out= with negative strides)


@pytest.mark.parametrize("labels", [np.array([0.0, np.nan, 1.0, 2.0]),
                                    np.array([np.nan] * 4, np.float32)],
                         ids=["one_nan", "all_nan_float32"])
@pytest.mark.parametrize("family", ["multiclass"])
def test_nan_labels_in_float_array(family, labels):
    """Float labels (NaN or not) shaped like the rows are rejected with a hint, nothing
    written (in place and into out)."""
    _, grad_fn, both_fn, _ = FAMILIES[family]
    x = _x()
    out = np.full(x.shape, SENTINEL)
    raises_untouched(FAMILIES[family][0], (x, labels), {}, ValueError,
                     ["(4, 3)", "(4,)", "integer dtype"], buffers=[x])
    for fn in (grad_fn, both_fn):
        raises_untouched(fn, (x, labels), {"out": out}, ValueError, ["integer dtype"],
                         buffers=[x, out])
        raises_untouched(fn, (x, labels), {"out": x}, ValueError, ["integer dtype"],
                         buffers=[x])


@pytest.mark.parametrize("family, target, fragments", [
    ("multiclass", np.array([0, 1, 2, 0], dtype=object), ["target", "object"]),
    ("binary", np.zeros((4, 3), dtype=object), ["target", "object"]),
    ("binary", np.zeros((4, 3), dtype=complex), ["target", "complex"]),
    ("binary", np.array([["a", "b", "c"]] * 4), ["target"]),
], ids=["multiclass_object", "binary_object", "binary_complex", "binary_str"])
def test_bad_target_dtypes_in_place(family, target, fragments):
    """Object, complex and string targets: TypeError, the in-place input untouched."""
    _, grad_fn, both_fn, _ = FAMILIES[family]
    x = _x()
    for fn in (grad_fn, both_fn):
        raises_untouched(fn, (x, target), {"out": x}, TypeError, fragments, buffers=[x])


def test_out_with_negative_strides():
    """A reversed view as `out` is not C-contiguous: rejected, untouched."""
    x = _x()
    buf = np.full((4, 3), SENTINEL)
    for fn, t in ((fastxent.cross_entropy_grad, Y), (fastxent.binary_cross_entropy_grad,
                                                     np.zeros((4, 3)))):
        raises_untouched(fn, (x, t), {"out": buf[::-1]}, ValueError, ["C-contiguous"],
                         buffers=[x, buf])


SOFTMAX_FAMILY = {"softmax": fastxent.softmax, "log_softmax": fastxent.log_softmax,
                  "logsumexp": fastxent.logsumexp}


def _softmax_cases():
    x = _x()
    yield "complex", x.astype(complex), {}, TypeError, ["real", "complex"]
    yield "object", x.astype(object), {}, TypeError, ["real", "object"]
    yield "bool", x > 0, {}, TypeError, ["real", "bool"]
    yield "str", np.array([["a", "b", "c"]] * 4), {}, TypeError, ["real"]
    yield "zero_d_axis", np.array(1.0), {"axis": 1}, ValueError, ["0-d"]
    yield "axis_out_of_range", x, {"axis": 2}, ValueError, ["axis 2"]
    yield "axis_float", x, {"axis": 1.0}, TypeError, ["axis"]
    yield "n_threads_zero", x, {"n_threads": 0}, ValueError, ["n_threads"]
    yield "n_threads_bool", x, {"n_threads": False}, TypeError, ["n_threads"]
    yield "n_threads_float", x, {"n_threads": 2.0}, TypeError, ["n_threads"]


@pytest.mark.parametrize("name", list(SOFTMAX_FAMILY))
@pytest.mark.parametrize("case, x, kwargs, exc, fragments",
                         [pytest.param(*c, id=c[0]) for c in _softmax_cases()])
def test_softmax_family_errors(name, case, x, kwargs, exc, fragments):
    """softmax, log_softmax, logsumexp: bad input raises; a sentinel `out` is untouched."""
    fn = SOFTMAX_FAMILY[name]
    x = np.array(x, copy=True)
    raises_untouched(fn, (x,), kwargs, exc, fragments, buffers=[x])
    if x.ndim == 2 and x.shape[1]:
        shape = x.shape[:1] if name == "logsumexp" else x.shape
        out = np.full(shape, SENTINEL)
        raises_untouched(fn, (x,), dict(kwargs, out=out), exc, fragments, buffers=[x, out])


def _softmax_out_cases():
    yield "wrong_shape", lambda x, lse: np.full((3, 4) if not lse else (3,), SENTINEL), \
        ["shape"]
    yield "wrong_dtype", lambda x, lse: np.full((4, 3) if not lse else (4,), SENTINEL,
                                                np.float32), ["dtype"]
    yield "non_contiguous", lambda x, lse: (np.full((4, 6), SENTINEL)[:, ::2] if not lse
                                            else np.full((4, 2), SENTINEL)[:, 0]), \
        ["C-contiguous"]
    yield "reversed", lambda x, lse: (np.full((4, 3), SENTINEL)[::-1] if not lse
                                      else np.full(4, SENTINEL)[::-1]), ["C-contiguous"]

    def read_only(x, lse):
        out = np.full((4, 3) if not lse else (4,), SENTINEL)
        out.flags.writeable = False
        return out
    yield "read_only", read_only, ["writeable"]

    def overlapping(x, lse):
        return x.reshape(-1)[1:5] if lse else None
    yield "lse_overlapping_input", overlapping, ["overlap"]


@pytest.mark.parametrize("name", list(SOFTMAX_FAMILY))
@pytest.mark.parametrize("case, make_out, fragments",
                         [pytest.param(*c, id=c[0]) for c in _softmax_out_cases()])
def test_softmax_family_out_errors(name, case, make_out, fragments):
    """A bad `out` for the softmax family: ValueError, `out` and the input untouched."""
    x = _x()
    out = make_out(x, name == "logsumexp")
    if out is None:
        pytest.skip("logsumexp only")
    raises_untouched(SOFTMAX_FAMILY[name], (x,), {"out": out}, ValueError, fragments,
                     buffers=[x, out])


@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
@pytest.mark.parametrize("shift", [1, -1])
def test_softmax_out_partially_overlapping_input(name, shift):
    """`out` overlapping the input without being it: ValueError, nothing written."""
    buf = np.linspace(-1.0, 1.0, 13)
    x, out = ((buf[1:].reshape(4, 3), buf[:12].reshape(4, 3)) if shift > 0
              else (buf[:12].reshape(4, 3), buf[1:].reshape(4, 3)))
    raises_untouched(SOFTMAX_FAMILY[name], (x,), {"out": out}, ValueError,
                     ["overlaps the input"], buffers=[buf])


@pytest.mark.parametrize("family", ["multiclass", "binary"])
@pytest.mark.parametrize("value", [-1e-300, -0.5, -np.inf, 1.0 + 1e-15, 2, np.inf, "0.1"])
def test_label_smoothing_outside_unit_interval_in_place(family, value):
    """label_smoothing outside [0, 1] (or not a number): ValueError before the in-place
    gradient is written."""
    _, grad_fn, _, _ = FAMILIES[family]
    x = _x()
    t = Y if family == "multiclass" else np.zeros((4, 3))
    raises_untouched(grad_fn, (x, t), {"out": x, "label_smoothing": value}, ValueError,
                     ["label_smoothing"], buffers=[x])


@pytest.mark.parametrize("family", ["multiclass", "binary"])
@pytest.mark.parametrize("value", [-1e-300, -1.0, -np.inf])
def test_negative_eps_in_place(family, value):
    """A negative eps: ValueError naming eps, the in-place probabilities untouched."""
    _, grad_fn, _, _ = FAMILIES[family]
    p = _p()
    t = Y if family == "multiclass" else np.zeros((4, 3))
    raises_untouched(grad_fn, (p, t), {"out": p, "eps": value, "from_logits": False},
                     ValueError, ["eps"], buffers=[p])


@pytest.mark.parametrize("family", ["multiclass", "binary"])
def test_n_threads_zero_large_input_in_place(family):
    """n_threads=0 is rejected also above SERIAL_BELOW (where threads are resolved), with
    nothing written to the in-place input."""
    _, grad_fn, _, _ = FAMILIES[family]
    x = np.linspace(-1.0, 1.0, 40000 * 3).reshape(40000, 3)
    t = np.arange(40000) % 3 if family == "multiclass" else np.zeros((40000, 3))
    raises_untouched(grad_fn, (x, t), {"out": x, "n_threads": 0}, ValueError, ["n_threads"],
                     buffers=[x])


def test_label_smoothing_bool_is_rejected():
    """A bool is not a smoothing amount (as for n_threads)."""
    x = np.zeros((2, 3))
    with pytest.raises(ValueError, match="label_smoothing must be a number in"):
        fastxent.cross_entropy(x, np.array([0, 1]), label_smoothing=True)
