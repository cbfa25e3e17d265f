"""The implementations ``fastxent bench`` compares, and how to look one up by name.

Each implementation is one ``impl_*.py`` module following the interface of
:mod:`fastxent._bench.builders`. fastxent is the reference; the others are its *peers*.
"""

import importlib

from fastxent._bench import (
    impl_fastxent,
    impl_jax,
    impl_numpy,
    impl_sklearn,
    impl_torch,
    impl_torch_chunked,
    impl_xgboost,
)
from fastxent._bench.builders import builders_of

#: Implementation name -> its module, fastxent first.
IMPLEMENTATIONS = {
    "fastxent": impl_fastxent,
    "numpy": impl_numpy,
    "torch": impl_torch,
    "torch-chunked": impl_torch_chunked,
    "sklearn": impl_sklearn,
    "jax": impl_jax,
    "xgboost": impl_xgboost,
}
PEERS = tuple(name for name in IMPLEMENTATIONS if name != "fastxent")
#: Implementation name -> the builder of the "evaluate" kind that returns every metric, for
#: the implementations to which the kind is applicable.
EVALUATE_METRICS = {
    name: module.evaluate_metrics
    for name, module in IMPLEMENTATIONS.items()
    if hasattr(module, "evaluate_metrics")
}
#: Implementation name -> {workload kind: its timed builder}.
BUILDERS = {name: builders_of(module) for name, module in IMPLEMENTATIONS.items()}


def required_module(name):
    """Name the module that implementation ``name`` needs, e.g. ``"torch"``.

    Parameters
    ----------
    name : str
        A key of ``IMPLEMENTATIONS``.

    Returns
    -------
    str
    """
    return IMPLEMENTATIONS[name].MODULE


def import_required_module(name):
    """Import the module that implementation ``name`` needs.

    Parameters
    ----------
    name : str
        A key of ``IMPLEMENTATIONS``.

    Returns
    -------
    module or None
        None when the import fails in any way (JAX can fail with more than ImportError).
    """
    try:
        return importlib.import_module(required_module(name))
    except Exception:
        return None


def available_peers():
    """List the peers (implementations other than fastxent) that can be imported.

    Returns
    -------
    list of str
    """
    return [name for name in PEERS if import_required_module(name) is not None]


def supports(name, kind):
    """Tell whether implementation ``name`` has a builder for workload kind ``kind``.

    A peer without one is not applicable to that kind: it is left out of the kind's results.

    Parameters
    ----------
    name : str
        A key of ``IMPLEMENTATIONS``.
    kind : str
        A workload kind.

    Returns
    -------
    bool
    """
    return kind in BUILDERS[name]


def prepare(name, workload, data, threads):
    """Build the timed callable of implementation ``name`` for a workload.

    Parameters
    ----------
    name : str
        A key of ``IMPLEMENTATIONS``.
    workload : Workload
    data : Data
    threads : int

    Returns
    -------
    callable
        One call computes the workload and returns the loss as a float.
    """
    return BUILDERS[name][workload.kind](data, threads)
