"""fastxent.dask: on a real dask.distributed cluster (two worker processes on the loopback
interface) and on Dask's local schedulers, against fastxent on the whole NumPy arrays."""

import math
import subprocess
import sys

import numpy as np
import pytest

da = pytest.importorskip("dask.array")
distributed = pytest.importorskip("distributed")

import dask  # noqa: E402
from dask.delayed import Delayed  # noqa: E402
from dask.utils import key_split  # noqa: E402

import fastxent  # noqa: E402
import fastxent.dask as fxd  # noqa: E402
from helpers import DASK_CHUNKS as CHUNKS  # noqa: E402
from helpers import assert_same_evaluation as _assert_same_evaluation  # noqa: E402
from helpers import dask_block_of_row  # noqa: E402

RTOL = 1e-12            # the merge is exact up to float64 rounding, for float32 input too
C = 10
N = sum(CHUNKS)


def make_data(dtype, seed=0, n=N):
    rng = np.random.default_rng(seed)
    z = (3.0 * rng.standard_normal((n, C))).astype(dtype)
    y = rng.integers(0, C, n)
    y[rng.random(n) < 0.1] = -1                     # ignored rows, when ignore_index=-1
    return z, y, rng.random(C) + 0.5, rng.random(n)


def soft_targets(rng, shape, dtype):
    t = rng.random(shape).astype(dtype)
    return (t / t.sum(axis=-1, keepdims=True)).astype(dtype)


def assert_same_evaluation(got, want):
    """Equal up to RTOL."""
    _assert_same_evaluation(got, want, RTOL)


# --- on the cluster --------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_evaluate_on_cluster_matches_single_machine(on_cluster, dtype):
    z, y, w, s = make_data(dtype)
    kw = dict(topk=(1, 3, 5), weight=w, ignore_index=-1)
    zd = da.from_array(z, chunks=(CHUNKS, (4, 6)))              # the class axis is split too
    yd = da.from_array(y, chunks=100)                            # misaligned: rechunked
    sd = da.from_array(s, chunks=((N - 5, 5),))
    with distributed.get_task_stream(on_cluster) as tasks:
        got = fxd.evaluate(zd, yd, sample_weight=sd, split_every=3, n_threads=1, **kw)
    assert_same_evaluation(got, fastxent.evaluate(z, y, sample_weight=s, **kw))
    ran = {key_split(t["key"]) for t in tasks.data}
    assert {"evaluate_block", "merge_states", "evaluation_result"} <= ran   # on the workers


def test_evaluate_on_cluster_options(on_cluster):
    z, y, _, s = make_data(np.float64, seed=1)
    zd = da.from_array(z, chunks=(CHUNKS, C))
    p = fastxent.softmax(z)
    pd_ = da.from_array(p, chunks=(CHUNKS, C))
    y = np.where(y < 0, 0, y)
    # plain, the default threads on the workers
    assert_same_evaluation(fxd.evaluate(zd, y), fastxent.evaluate(z, y))
    # probabilities, and an eps
    assert_same_evaluation(fxd.evaluate(pd_, y, from_logits=False, eps=1e-9),
                           fastxent.evaluate(p, y, from_logits=False, eps=1e-9))
    # soft targets, chunked differently from the input
    t = soft_targets(np.random.default_rng(2), z.shape, np.float64)
    got = fxd.evaluate(zd, da.from_array(t, chunks=(250, 5)), sample_weight=s)
    assert got.accuracy is None
    assert_same_evaluation(got, fastxent.evaluate(z, t, sample_weight=s))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_cross_entropy_on_cluster_matches_single_machine(on_cluster, dtype):
    z, y, w, s = make_data(dtype)
    zd = da.from_array(z, chunks=(CHUNKS, C))
    rtol = RTOL if dtype == np.float64 else 1e-6    # float32 sums are rounded once per block
    for kw in (dict(), dict(weight=w, sample_weight=s, ignore_index=-1, label_smoothing=0.1)):
        yy = y if "ignore_index" in kw else np.where(y < 0, 3, y)
        for reduction in ("none", "sum", "mean"):
            loss = fxd.cross_entropy(zd, yy, reduction=reduction, split_every=3, **kw)
            want = fastxent.cross_entropy(z, yy, reduction=reduction, **kw)
            assert loss.dtype == want.dtype == dtype
            if reduction == "none":
                assert loss.chunks == (CHUNKS,)
            else:
                assert loss.shape == ()
            got = loss.compute()
            assert got.dtype == dtype
            np.testing.assert_allclose(got, want, rtol=rtol, err_msg=f"{reduction} {kw}")


def test_cross_entropy_on_cluster_soft_targets(on_cluster):
    rng = np.random.default_rng(3)
    z = rng.standard_normal((N, C))
    t, s = soft_targets(rng, z.shape, np.float64), rng.random(N)
    zd, td = da.from_array(z, chunks=(CHUNKS, C)), da.from_array(t, chunks=(400, C))
    for reduction in ("none", "sum", "mean"):
        for sw in (None, s):
            np.testing.assert_allclose(
                fxd.cross_entropy(zd, td, sample_weight=sw, reduction=reduction).compute(),
                fastxent.cross_entropy(z, t, sample_weight=sw, reduction=reduction), rtol=RTOL)


def test_bad_label_raises_from_the_workers(on_cluster):
    z, y, _, _ = make_data(np.float64)
    y = np.where(y < 0, 0, y)
    y[1000] = C
    zd = da.from_array(z, chunks=(CHUNKS, C))
    block = dask_block_of_row(1000)
    with pytest.raises(ValueError, match=rf"is not a class index .*block of rows \[{block}\]"):
        fxd.evaluate(zd, y)
    with pytest.raises(ValueError, match=rf"is not a class index .*block of rows \[{block}\]"):
        fxd.cross_entropy(zd, y, reduction="none").compute()


def test_delayed_result_computes_on_cluster(client):
    z, y, w, _ = make_data(np.float64, seed=4)
    zd = da.from_array(z, chunks=(CHUNKS, C))
    lazy = fxd.evaluate(zd, y, ignore_index=-1, compute=False)
    loss = fxd.cross_entropy(zd, y, ignore_index=-1, weight=w)
    result, value = client.compute([lazy, loss], sync=True)
    assert_same_evaluation(result, fastxent.evaluate(z, y, ignore_index=-1))
    np.testing.assert_allclose(value, fastxent.cross_entropy(z, y, ignore_index=-1, weight=w),
                               rtol=RTOL)


# --- the graph ---------------------------------------------------------------------------

def task_counts(collection):
    counts = {}
    for key in dict(collection.__dask_graph__()):
        counts[key_split(key)] = counts.get(key_split(key), 0) + 1
    return counts


@pytest.mark.parametrize("split_every, merges", [(2, 10 + 5 + 3 + 2), (3, 7 + 3), (8, 3),
                                                 (20, 0)])
def test_graph_is_one_task_per_block_plus_the_tree(split_every, merges):
    z, y, _, _ = make_data(np.float64)
    zd = da.from_array(z, chunks=(CHUNKS, C))
    lazy = fxd.evaluate(zd, y, ignore_index=-1, split_every=split_every, compute=False)
    assert isinstance(lazy, Delayed)
    counts = task_counts(lazy)
    assert counts["evaluate_block"] == len(CHUNKS)
    assert counts.get("merge_states", 0) == merges
    assert counts["evaluation_result"] == 1
    total = fxd.cross_entropy(zd, y, ignore_index=-1, split_every=split_every)
    counts = task_counts(total)
    assert counts["sum_block"] == len(CHUNKS)
    assert counts.get("add_sums", 0) == merges
    none = fxd.cross_entropy(zd, y, ignore_index=-1, reduction="none")
    assert task_counts(none)["cross_entropy_none"] == len(CHUNKS)


def test_result_does_not_depend_on_the_tree():
    z, y, w, s = make_data(np.float64, seed=5)
    zd = da.from_array(z, chunks=(CHUNKS, C))
    kw = dict(weight=w, sample_weight=s, ignore_index=-1)
    want = fastxent.evaluate(z, y, **kw)
    for split_every in (2, 3, 8, 64):
        assert_same_evaluation(
            fxd.evaluate(zd, y, split_every=split_every, n_threads=1, **kw), want)


def test_nothing_is_computed_before_compute():
    z, y, w, s = make_data(np.float64)
    calls = []

    def counted(block):
        calls.append(block.shape)
        return block

    zd = da.from_array(z, chunks=(CHUNKS, C)).map_blocks(counted, dtype=z.dtype,
                                                          meta=np.empty((0, 0), z.dtype))
    yd = da.from_array(y, chunks=500).map_blocks(counted, dtype=y.dtype,
                                                 meta=np.empty((0,), y.dtype))
    with dask.config.set(scheduler="threads"):
        lazy = fxd.evaluate(zd, yd, sample_weight=s, ignore_index=-1, compute=False)
        losses = {r: fxd.cross_entropy(zd, yd, weight=w, ignore_index=-1, reduction=r)
                  for r in ("none", "sum", "mean")}
        assert calls == []
        result = lazy.compute()
        assert len(calls) > 0
        assert_same_evaluation(result, fastxent.evaluate(z, y, sample_weight=s, ignore_index=-1))
        for reduction, loss in losses.items():
            np.testing.assert_allclose(
                loss.compute(), fastxent.cross_entropy(z, y, weight=w, ignore_index=-1,
                                                       reduction=reduction), rtol=RTOL)


# --- local schedulers, other layouts --------------------------------------------------------

def test_threaded_scheduler_and_numpy_input():
    z, y, w, s = make_data(np.float32, seed=6)
    kw = dict(weight=w, sample_weight=s, ignore_index=-1, topk=(2,))
    with dask.config.set(scheduler="threads"):
        got = fxd.evaluate(z, y, **kw)                     # NumPy in: wrapped with from_array
        assert_same_evaluation(got, fastxent.evaluate(z, y, **kw))
        loss = fxd.cross_entropy(z, list(y), weight=w, ignore_index=-1, reduction="none")
        assert isinstance(loss, da.Array)
        np.testing.assert_allclose(loss.compute(), fastxent.cross_entropy(
            z, y, weight=w, ignore_index=-1, reduction="none"), rtol=1e-6)


def test_class_axis_not_last_and_rows_split_on_two_axes():
    rng = np.random.default_rng(7)
    z = rng.standard_normal((6, 5, 9))                   # (N, C, d) with axis=1
    y, s = rng.integers(0, 5, (6, 9)), rng.random((6, 9))
    zd = da.from_array(z, chunks=(2, 2, 4))
    with dask.config.set(scheduler="sync"):
        assert_same_evaluation(fxd.evaluate(zd, y, sample_weight=s, axis=1, topk=(1, 2)),
                               fastxent.evaluate(z, y, sample_weight=s, axis=1, topk=(1, 2)))
        for reduction in ("none", "sum", "mean"):
            loss = fxd.cross_entropy(zd, y, sample_weight=s, axis=1, reduction=reduction)
            if reduction == "none":
                assert loss.chunks == ((2, 2, 2), (4, 4, 1))
            np.testing.assert_allclose(loss.compute(), fastxent.cross_entropy(
                z, y, sample_weight=s, axis=1, reduction=reduction), rtol=RTOL)


def test_no_rows_and_all_ignored():
    z = np.zeros((0, 4))
    y = np.zeros(0, dtype=np.int64)
    with dask.config.set(scheduler="sync"):
        r = fxd.evaluate(da.from_array(z, chunks=(1, 4)), y)
        assert r.count == 0 and r.weight_sum == 0 and math.isnan(r.loss)
        assert fxd.cross_entropy(z, y, reduction="sum").compute() == 0
        assert math.isnan(fxd.cross_entropy(z, y).compute())
        assert fxd.cross_entropy(z, y, reduction="none").compute().shape == (0,)
        zz = da.ones((10, 4), chunks=3)
        assert math.isnan(fxd.cross_entropy(zz, np.full(10, -1), ignore_index=-1).compute())


# --- errors when the graph is built ------------------------------------------------------

@pytest.mark.parametrize("call, error, match", [
    (lambda z, y: fxd.evaluate(z, y[:-1]), ValueError, "labels must have shape"),
    (lambda z, y: fxd.evaluate(z, y.astype(bool)), TypeError, "integer class labels"),
    (lambda z, y: fxd.evaluate(z, y, topk=(0,)), ValueError, "topk"),
    (lambda z, y: fxd.evaluate(z, y, weight=np.ones(3)), ValueError, "weight must have shape"),
    (lambda z, y: fxd.evaluate(z, y, sample_weight=np.ones(3)), ValueError, "sample_weight"),
    (lambda z, y: fxd.evaluate(z, y, split_every=1), ValueError, "split_every"),
    (lambda z, y: fxd.evaluate(z, y, axis=2), ValueError, "out of bounds"),
    (lambda z, y: fxd.evaluate(z[0], y[0]), ValueError, "at least one axis of rows"),
    (lambda z, y: fxd.evaluate(z[z[:, 0] > 0], y), ValueError, "unknown chunk sizes"),
    (lambda z, y: fxd.cross_entropy(z, y, reduction="avg"), ValueError, "reduction"),
    (lambda z, y: fxd.cross_entropy(z, y, label_smoothing=2), ValueError, "label_smoothing"),
    (lambda z, y: fxd.cross_entropy(z, y, n_threads=0), ValueError, "n_threads"),
    (lambda z, y: fxd.cross_entropy(z, z, ignore_index=0), ValueError, "soft targets"),
])
def test_bad_arguments_raise_when_the_graph_is_built(call, error, match):
    z = da.ones((10, 4), chunks=5)
    y = da.zeros(10, dtype=np.int64, chunks=5)
    with dask.config.set(scheduler="sync"), pytest.raises(error, match=match):
        call(z, y)


def test_import_without_dask_says_what_to_install():
    code = ("import sys; sys.modules['dask'] = None\n"
            "try:\n    import fastxent.dask\n"
            "except ImportError as e:\n    print(e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert 'pip install "dask[array]" distributed' in out
