"""Docstring fragments shared by the public functions, and the decorator that attaches a
docstring built from them where a function is defined."""

N_THREADS = """
    n_threads : int, optional
        OpenMP threads: None uses the usable cores (or ``OMP_NUM_THREADS``), negative counts
        back from them (-1: all), 0 is an error. Small inputs run on one thread."""

OUT = """
    out : ndarray, optional
        Where to write the gradient: C-contiguous, writeable, the shape and computation dtype
        of `input`. ``out=input`` computes the gradient in place."""

SOFTCAP = """
    softcap : float > 0, optional
        Logit soft-capping (Gemma 2): logits ``z`` become ``softcap * tanh(z / softcap)``
        before everything else. Logits only."""

RETURN_LSE = """
    return_lse : bool, default=False
        Also return each row's log-sum-exp (of the soft-capped logits), shaped like the
        rows, from the same pass (ignored rows included). Logits only."""

RETURNS_LOSS = """
    Returns
    -------
    loss : scalar of the computation dtype, or ndarray for ``reduction="none"``
"""

RETURNS_GRAD = """
    Returns
    -------
    grad : ndarray shaped like `input` (`out` itself when given)
"""

HESS_OUT = """
    hess_out : ndarray, optional
        Where to write the Hessian's diagonal, as `out`; ``hess_out=input`` computes it in
        place. It must not overlap `out`."""

RETURNS_GRAD_HESS = """
    Returns
    -------
    grad : ndarray shaped like `input` (`out` itself when given)
    hess : ndarray shaped like `input` (`hess_out` itself when given)
"""

RETURNS_BOTH = """
    Returns
    -------
    loss : scalar, or ndarray for ``reduction="none"``
    grad : ndarray shaped like `input` (`out` itself when given)
"""


def doc(text):
    """Decorator: attach `text`, built from the shared fragments above, as the docstring of
    the function it decorates.

    Parameters
    ----------
    text : str
    """
    def attach(func):
        func.__doc__ = text
        return func
    return attach
