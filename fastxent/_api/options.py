"""The options of a loss or an evaluation: checked once, frozen, compared by value.

Each public function builds one of these frozen dataclasses from its keyword arguments. The
dataclass checks every option and keeps it as a plain Python value (NumPy scalars and 0-d
arrays become the numbers they hold, class weights a read-only float64 array), so the kernels,
``Evaluator.merge``, ``Evaluator.to_dict`` and checkpoints all see the same values.

- ``LossOptions``: what every loss takes (``binary_cross_entropy``'s options).
- ``CrossEntropyOptions``: adds the per-class ``weight`` and the class ``axis``;
  ``ignore_index`` is a class label (an int64).
- ``EvaluationOptions``: ``evaluate``'s and ``Evaluator``'s: adds ``topk``; the class weights
  must be finite and are copied (an Evaluator keeps them); no label smoothing, the mean.

Every field names its check in its metadata (``{"check": check}``, called as
``check(value, name)``), and ``__post_init__`` runs them in the fields' order. The fields with
``compare=True`` are the options that change a result (``validate`` and ``n_threads`` do not):
``to_dict`` saves them, and two options are the same when ``to_dict`` gives the same values
(arrays compared by value).
"""

import dataclasses
import math
from dataclasses import dataclass, field

import numpy as np

from fastxent._api import validation as v
from fastxent._core.threads import effective_n_threads

_TOPK_MUST = "hold positive ints of at most 2**63 - 1 (a k of at least C gives 1)"


def _target_value(value, name):
    """A binary ``ignore_index``: None, or a float that targets are compared with."""
    if value is None:
        return None
    return v.check_real(value, name, -math.inf, math.inf, type_error=TypeError,
                        must="be None or a number other than NaN that float64 holds")


def _class_label(value, name):
    """A multiclass ``ignore_index``: None, or an int compared with int64 class labels."""
    if value is None:
        return None
    return v.check_int(value, name, low=v.INT64_MIN, high=v.INT64_MAX,
                       must="be None or an int that fits in int64 (labels are compared as int64)")


def _smoothing(value, name):
    return v.check_real(value, name, 0, 1)


def _eps(value, name):
    """None (the dtype's eps, resolved per call) or a float in [0, 0.5)."""
    return None if value is None else v.check_real(value, name, 0, 0.5, high_open=True)


def _non_negative(value, name):
    """A finite float >= 0: ``z_loss``, ``focal_gamma``."""
    return v.check_real(value, name, 0, np.finfo(np.float64).max,
                        must="be a finite number >= 0")


def _softcap(value, name):
    """None (no soft-capping) or a finite float > 0."""
    if value is None:
        return None
    value = v.check_real(value, name, 0, np.finfo(np.float64).max, type_error=TypeError,
                         must="be None or a finite number > 0")
    if value == 0:
        raise ValueError(f"{name} must be None or a finite number > 0, got 0.0")
    return value


def _binary_focal_alpha(value, name):
    """torchvision's alpha: None, or a float in [0, 1]; a negative number means none (None)."""
    if value is None:
        return None
    value = v.check_real(value, name, -math.inf, 1, type_error=TypeError,
                         must="be None, a negative number (no alpha) or a number in [0, 1]")
    return None if value < 0 else value


def _class_focal_alpha(value, name):
    """Keras's alpha: None, a float >= 0 for every class, or a read-only float64 array of
    per-class alphas (finite, >= 0; its shape is checked against the input's classes)."""
    if value is None:
        return None
    if np.ndim(value) == 0:
        return _non_negative(value, name)
    alpha = np.array(v.float_like(value, np.float64, name))
    bad = ~(np.isfinite(alpha) & (alpha >= 0))
    if bad.any():
        index = int(np.argmax(bad.reshape(-1)))
        raise ValueError(f"{name} must hold finite numbers >= 0: {name}[{index}] = "
                         f"{alpha.reshape(-1)[index]}")
    alpha.flags.writeable = False
    return alpha


def _thread_count(value, name):
    """None, or a thread count as ``effective_n_threads`` checks it (its messages name
    `name`, ``n_threads``)."""
    if value is None:
        return None
    effective_n_threads(value)
    return v.check_int(value, name)


def _class_weight(value, name):
    """None, or the per-class weights as a read-only float64 array.

    Not copied: a loss reads them during the call, and checks that ``out`` does not overlap
    them. Their shape is checked against the input's classes.
    """
    if value is None:
        return None
    weight = v.float_like(value, np.float64, name).view()
    weight.flags.writeable = False
    return weight


def _kept_class_weight(value, name, what="one weight per class"):
    """None, or a read-only float64 copy of the per-class weights: 1-D and finite (an
    Evaluator keeps them, and a NaN weight would make every later sum NaN). `what` says what
    the array holds, for the message of one that is not 1-D."""
    if value is None:
        return None
    weight = np.array(v.float_like(value, np.float64, name))
    if weight.ndim != 1:
        raise ValueError(f"{name} must be 1-D, {what}, got shape {weight.shape}")
    not_finite = ~np.isfinite(weight)
    if not_finite.any():
        index = int(np.argmax(not_finite))
        raise ValueError(f"{name} must be finite: {name}[{index}] = {weight[index]}")
    weight.flags.writeable = False
    return weight


def _prior(value, name):
    """None, or a read-only float64 copy of the class prior: 1-D, finite, non-negative, with a
    positive sum (kept as given; it is divided by its sum where it is used, so that it saves
    and compares exactly)."""
    if value is None:
        return None
    prior = _kept_class_weight(value, name, what="one value per class")
    if (prior < 0).any():
        index = int(np.argmax(prior < 0))
        raise ValueError(f"{name} must be non-negative: {name}[{index}] = {prior[index]}")
    if not (prior.size and prior.max() > 0):    # the sum (which may overflow) is > 0
        raise ValueError(f"{name} must have a positive sum (class frequencies or "
                         f"probabilities), got {prior.sum()}")
    return prior


def _topk(value, name):
    """The distinct ks of ``topk``, sorted, as a tuple of ints."""
    try:
        ks = list(value)
    except TypeError:
        raise TypeError(f"{name} must {_TOPK_MUST}, got {value!r}") from None
    if not ks:
        raise ValueError(f"{name} must {_TOPK_MUST}, got {value!r}")
    return tuple(sorted({v.check_int(k, name, low=1, high=v.INT64_MAX, must=_TOPK_MUST)
                         for k in ks}))


def _saved(value):
    """An option's value as JSON holds it: arrays and tuples as lists."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, tuple):
        return list(value)
    return value


@dataclass(frozen=True, eq=False)
class LossOptions:
    """The options every loss takes (``binary_cross_entropy``'s), checked and plain.

    Constructing one checks every option: TypeError or ValueError with a message that names
    it. See ``binary_cross_entropy`` for their meaning.

    Attributes
    ----------
    from_logits : bool
    ignore_index : float or None
        Compared with the (float) targets.
    label_smoothing : float in [0, 1]
    eps : float in [0, 0.5), or None for the dtype's eps (see ``clip_eps``)
    reduction : {"mean", "sum", "none"}
    validate : bool
    n_threads : int or None
        As requested; each call resolves it for its input's size.
    softcap : float > 0, or None
        Logits only.
    focal_gamma : float >= 0
    focal_alpha : float in [0, 1], or None
        A negative alpha (torchvision's "none") becomes None.
    """

    from_logits: bool = field(default=True, metadata={"check": v.check_flag})
    ignore_index: float | None = field(default=None, metadata={"check": _target_value})
    label_smoothing: float = field(default=0.0, metadata={"check": _smoothing})
    eps: float | None = field(default=None, metadata={"check": _eps})
    reduction: str = field(default="mean", metadata={"check": v.check_reduction})
    validate: bool = field(default=True, compare=False, metadata={"check": v.check_flag})
    n_threads: int | None = field(default=None, compare=False,
                                  metadata={"check": _thread_count})
    softcap: float | None = field(default=None, metadata={"check": _softcap})
    focal_gamma: float = field(default=0.0, metadata={"check": _non_negative})
    focal_alpha: float | None = field(default=None, metadata={"check": _binary_focal_alpha})

    def __post_init__(self):
        for option in dataclasses.fields(self):
            value = option.metadata["check"](getattr(self, option.name), option.name)
            object.__setattr__(self, option.name, value)
        self._check_combination()

    def _check_combination(self):
        """Raise for options that are each valid but undefined together."""
        if not self.from_logits and self.softcap is not None:
            raise ValueError("softcap applies to logits: it is undefined with "
                             "from_logits=False")

    def clip_eps(self, dtype):
        """The probability clipping bound for `dtype`: `eps`, or ``np.finfo(dtype).eps``."""
        return float(np.finfo(dtype).eps) if self.eps is None else self.eps

    def keywords(self):
        """The keyword arguments that make these options (the constructor's)."""
        return {option.name: getattr(self, option.name)
                for option in dataclasses.fields(self) if option.init}

    def to_dict(self):
        """The options that change a result, as JSON values (arrays as lists).

        Returns
        -------
        dict
            What an Evaluator's state and a checkpoint save, and what ``differences``
            compares.
        """
        return {option.name: _saved(getattr(self, option.name))
                for option in dataclasses.fields(self) if option.compare}

    def differences(self, other):
        """The options that change a result and differ from `other`'s.

        Parameters
        ----------
        other : options of the same class

        Returns
        -------
        list of (str, object, object)
            ``(name, mine, theirs)`` of each, values as ``to_dict`` gives them, in the fields'
            order; empty when the options are the same.
        """
        mine, theirs = self.to_dict(), other.to_dict()
        return [(name, mine[name], theirs[name]) for name in mine if mine[name] != theirs[name]]

    def __eq__(self, other):
        if type(other) is not type(self):
            return NotImplemented
        return not self.differences(other)


@dataclass(frozen=True, eq=False)
class CrossEntropyOptions(LossOptions):
    """``cross_entropy``'s options: ``LossOptions`` with per-class weights and a class axis.

    Attributes
    ----------
    ignore_index : int or None
        A class label: an int of int64's range.
    weight : ndarray of float64, or None
        The per-class weights, read-only (not a copy of a float64 array).
    axis : int
        The class axis, checked against the input's shape by each call.
    focal_alpha : float >= 0, ndarray of float64, or None
        Keras's alpha: one for every class, or per class (read-only, finite, >= 0; its shape
        is checked against the input's classes).
    z_loss : float >= 0
        Logits only.
    """

    ignore_index: int | None = field(default=None, metadata={"check": _class_label})
    weight: np.ndarray | None = field(default=None, metadata={"check": _class_weight})
    axis: int = field(default=-1, metadata={"check": v.check_int})
    focal_alpha: float | np.ndarray | None = field(default=None,
                                                   metadata={"check": _class_focal_alpha})
    z_loss: float = field(default=0.0, metadata={"check": _non_negative})

    def _check_combination(self):
        super()._check_combination()
        if not self.from_logits and self.z_loss != 0:
            raise ValueError("z_loss is a function of the logits' log-sum-exp: it is "
                             "undefined with from_logits=False")

    @property
    def has_extra_terms(self):
        """Whether z-loss, soft-capping or focal terms change the loss (the option loops)."""
        return self.z_loss != 0 or self.softcap is not None or self.focal_gamma != 0


@dataclass(frozen=True, eq=False)
class EvaluationOptions(CrossEntropyOptions):
    """``evaluate``'s and ``Evaluator``'s options: ``CrossEntropyOptions`` with ``topk``.

    The loss is the mean without label smoothing (both fixed, neither compared nor saved), nor
    z-loss, soft-capping or focal terms (training terms, not metrics).

    Attributes
    ----------
    weight : ndarray of float64, or None
        A read-only copy of the per-class weights, 1-D and finite.
    topk : tuple of int
        The distinct ks, sorted.
    per_class, confusion : bool
        Whether the result has a per-class table and a confusion matrix.
    prior : ndarray of float64, or None
        The class prior of the baseline as given (read-only; the baseline divides it by its
        sum).
    """

    label_smoothing: float = field(default=0.0, init=False, compare=False,
                                   metadata={"check": _smoothing})
    reduction: str = field(default="mean", init=False, compare=False,
                           metadata={"check": v.check_reduction})
    weight: np.ndarray | None = field(default=None, metadata={"check": _kept_class_weight})
    topk: tuple[int, ...] = field(default=(1, 5), metadata={"check": _topk})
    per_class: bool = field(default=False, metadata={"check": v.check_flag})
    confusion: bool = field(default=False, metadata={"check": v.check_flag})
    prior: np.ndarray | None = field(default=None, metadata={"check": _prior})
    # The training terms are not metrics: fixed at none, neither compared nor saved.
    softcap: None = field(default=None, init=False, compare=False,
                          metadata={"check": _softcap})
    focal_gamma: float = field(default=0.0, init=False, compare=False,
                               metadata={"check": _non_negative})
    focal_alpha: None = field(default=None, init=False, compare=False,
                              metadata={"check": _class_focal_alpha})
    z_loss: float = field(default=0.0, init=False, compare=False,
                          metadata={"check": _non_negative})
