"""fastxent.dask.evaluate_linear: hidden states in a Dask array against fastxent.evaluate_linear
and fastxent.evaluate of the logits, on a dask.distributed cluster and on Dask's local
schedulers; the weight is one value of the graph (or scattered), never copied into the tasks."""

import pickle
import time

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

D, V = 12, 30
N = sum(CHUNKS)
# The merge adds float64 sums exactly; a float32 row's logits may round differently in another
# chunk of rows (a different GEMM), float64 ones only in the last bits.
RTOL = {np.float64: 1e-11, np.float32: 2e-5}


def make_data(dtype, seed=0):
    """Hidden states, weight, bias, labels (10 % of them -1), class and sample weights."""
    rng = np.random.default_rng(seed)
    h = rng.standard_normal((N, D)).astype(dtype)
    w = (0.5 * rng.standard_normal((V, D))).astype(dtype)
    b = (0.1 * rng.standard_normal(V)).astype(dtype)
    y = rng.integers(0, V, N)
    y[rng.random(N) < 0.1] = -1
    return h, w, b, y, rng.random(V) + 0.5, rng.random(N)


def assert_same_evaluation(got, want, rtol):
    """Equal up to `rtol`, and to 1e-12 near 0 (where a float64 logit's last bits count)."""
    _assert_same_evaluation(got, want, rtol, atol=1e-12)


def logits_of(h, w, b):
    return (h.astype(np.float64) @ w.T.astype(np.float64) + b).astype(h.dtype)


# --- on the cluster --------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_on_cluster_matches_single_machine(on_cluster, dtype):
    h, w, b, y, cw, s = make_data(dtype)
    kw = dict(topk=(1, 3, 5), weight=cw, ignore_index=-1)
    hd = da.from_array(h, chunks=(CHUNKS, D))
    yd = da.from_array(y, chunks=100)                            # misaligned: rechunked
    sd = da.from_array(s, chunks=((N - 5, 5),))
    with distributed.get_task_stream(on_cluster) as tasks:
        got = fxd.evaluate_linear(hd, w, yd, linear_bias=b, sample_weight=sd, split_every=3,
                                  chunk_rows=64, n_threads=1, **kw)
    want = fastxent.evaluate_linear(h, w, y, linear_bias=b, sample_weight=s, **kw)
    assert_same_evaluation(got, want, RTOL[dtype])
    assert_same_evaluation(got, fastxent.evaluate(logits_of(h, w, b), y, sample_weight=s, **kw),
                           RTOL[dtype])
    ran = {key_split(t["key"]) for t in tasks.data}
    assert {"evaluate_linear_block", "merge_states", "evaluation_result"} <= ran


def test_on_cluster_the_weight_is_scattered_to_every_worker(on_cluster):
    h, w, b, y, _, _ = make_data(np.float64, seed=1)
    hd = da.from_array(h, chunks=(CHUNKS, D))
    lazy = fxd.evaluate_linear(hd, w, y, linear_bias=b, ignore_index=-1, compute=False)
    graph = dict(lazy.__dask_graph__())
    assert not [key for key, task in graph.items()
                if isinstance(getattr(task, "value", None), np.ndarray)
                and task.value.shape in (w.shape, b.shape)]
    n_workers = len(on_cluster.scheduler_info()["workers"])

    def replicated():
        held = on_cluster.who_has()
        return [key for key in held if key_split(key) == "ndarray" and len(held[key]) == n_workers]

    deadline = time.monotonic() + 10        # the scheduler learns of the copies as they land
    while len(replicated()) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(replicated()) >= 2                            # the weight and the bias
    result = on_cluster.compute(lazy, sync=True)
    assert_same_evaluation(result, fastxent.evaluate_linear(h, w, y, linear_bias=b,
                                                            ignore_index=-1), RTOL[np.float64])


def test_on_cluster_soft_targets_and_no_bias(on_cluster):
    rng = np.random.default_rng(2)
    h, w, _, _, _, s = make_data(np.float64, seed=2)
    t = rng.random((N, V))
    t /= t.sum(axis=1, keepdims=True)
    hd = da.from_array(h, chunks=(CHUNKS, D))
    got = fxd.evaluate_linear(hd, w, da.from_array(t, chunks=(250, 7)), sample_weight=s)
    assert got.accuracy is None
    assert_same_evaluation(got, fastxent.evaluate_linear(h, w, t, sample_weight=s),
                           RTOL[np.float64])
    assert_same_evaluation(got, fastxent.evaluate(h @ w.T, t, sample_weight=s),
                           RTOL[np.float64])


def test_bad_label_raises_from_the_workers(on_cluster):
    h, w, b, y, _, _ = make_data(np.float64)
    y = np.where(y < 0, 0, y)
    y[1000] = V
    hd = da.from_array(h, chunks=(CHUNKS, D))
    block = dask_block_of_row(1000)
    with pytest.raises(ValueError, match=rf"is not a class index .*block of rows \[{block}\]"):
        fxd.evaluate_linear(hd, w, y, linear_bias=b)


# --- local schedulers and the graph ------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("scheduler", ["threads", "sync"])
def test_local_schedulers_and_options(dtype, scheduler):
    h, w, b, y, cw, s = make_data(dtype, seed=3)
    hd = da.from_array(h, chunks=(CHUNKS, D))
    cases = [dict(), dict(linear_bias=b), dict(linear_bias=b, ignore_index=-1),
             dict(ignore_index=-1, sample_weight=s), dict(ignore_index=-1, weight=cw),
             dict(linear_bias=b, ignore_index=-1, weight=cw, sample_weight=s, topk=(2,),
                  chunk_rows=5)]
    with dask.config.set(scheduler=scheduler):
        for kw in cases:
            yy = y if "ignore_index" in kw else np.where(y < 0, 3, y)
            got = fxd.evaluate_linear(hd, w, yy, n_threads=1, **kw)
            assert_same_evaluation(got, fastxent.evaluate_linear(h, w, yy, **kw), RTOL[dtype])
            kw.pop("chunk_rows", None)
            bias = kw.pop("linear_bias", np.zeros(V, dtype))
            assert_same_evaluation(got, fastxent.evaluate(logits_of(h, w, bias), yy, **kw),
                                   RTOL[dtype])


def test_numpy_input_is_wrapped():
    h, w, b, y, _, _ = make_data(np.float32, seed=4)
    y = np.where(y < 0, 0, y)
    got = fxd.evaluate_linear(h, w, y, linear_bias=b, n_threads=1)
    assert_same_evaluation(got, fastxent.evaluate_linear(h, w, y, linear_bias=b),
                           RTOL[np.float32])


def test_weight_is_one_key_of_the_graph_that_every_block_reads():
    """Without a distributed client the weight and the bias are one key each (a NumPy array
    passed as a task's argument would be embedded in every task instead)."""
    h, _, _, y, _, _ = make_data(np.float64, seed=5)
    rng = np.random.default_rng(5)
    w, b = rng.standard_normal((1000, D)), rng.standard_normal(1000)    # 96 kB
    hd = da.from_array(h, chunks=(CHUNKS, D))
    lazy = fxd.evaluate_linear(hd, w, y, linear_bias=b, ignore_index=-1, split_every=3,
                               compute=False)
    assert isinstance(lazy, Delayed)
    graph = dict(lazy.__dask_graph__())
    holding = {name: [key for key, task in graph.items()
                      if getattr(task, "value", None) is array]
               for name, array in (("weight", w), ("bias", b))}
    assert [key_split(k) for k in holding["weight"]] == ["linear_weight"]
    assert [key_split(k) for k in holding["bias"]] == ["linear_bias"]
    blocks = [task for key, task in graph.items() if key_split(key) == "evaluate_linear_block"]
    assert len(blocks) == len(CHUNKS)
    for task in blocks:
        assert {holding["weight"][0], holding["bias"][0]} <= set(task.dependencies)
    weight_shaped = [key for key, task in graph.items()
                     if isinstance(getattr(task, "value", None), np.ndarray)
                     and task.value.shape == w.shape]
    assert weight_shaped == holding["weight"]
    for task in blocks:                             # and no task embeds a copy
        assert len(pickle.dumps(task)) < w.nbytes // 4
    assert_same_evaluation(lazy.compute(scheduler="sync"),
                           fastxent.evaluate_linear(h, w, y, linear_bias=b, ignore_index=-1),
                           RTOL[np.float64])


def test_no_rows_and_all_ignored():
    _, w, b, _, _, _ = make_data(np.float64)
    empty = fxd.evaluate_linear(da.zeros((0, D), chunks=(1, D)), w, np.zeros(0, np.int64))
    assert empty.count == 0 and np.isnan(empty.loss)
    h = np.ones((10, D))
    ignored = fxd.evaluate_linear(da.from_array(h, chunks=(3, D)), w, np.full(10, -1),
                                  linear_bias=b, ignore_index=-1)
    assert ignored.count == 0


# --- bad arguments -------------------------------------------------------------------------

H2 = np.zeros((8, D))
W2 = np.zeros((V, D))
Y2 = np.zeros(8, np.int64)


@pytest.mark.parametrize("call, error, match", [
    (lambda: fxd.evaluate_linear(da.from_array(H2, chunks=(4, 5)), W2, Y2), ValueError,
     r"input is chunked along d, its axis 1 \(chunks \(5, 5, 2\)\); each block must hold "
     r"whole hidden states: pass input.rechunk\(\{1: -1\}\)"),
    (lambda: fxd.evaluate_linear(np.zeros(D), W2, 0), ValueError,
     r"input must be hidden states of shape \(N, d\)"),
    (lambda: fxd.evaluate_linear(H2, np.zeros((V, D + 1)), Y2), ValueError,
     rf"linear_weight must have shape \(V, {D}\) for input of shape \(8, {D}\)"),
    (lambda: fxd.evaluate_linear(H2, W2.astype(np.float32), Y2), TypeError,
     "linear_weight is float32 but input is float64"),
    (lambda: fxd.evaluate_linear(H2, W2, Y2, linear_bias=np.zeros(V + 1)), ValueError,
     rf"linear_bias must have shape \({V},\)"),
    (lambda: fxd.evaluate_linear(H2, W2, np.zeros(9, np.int64)), ValueError,
     r"integer class labels must have shape \(8,\)"),
    (lambda: fxd.evaluate_linear(H2, W2, np.zeros((8, V + 1))), ValueError,
     rf"soft targets must have shape \(8, {V}\) .*got \(8, {V + 1}\)"),
    (lambda: fxd.evaluate_linear(H2, W2, Y2, sample_weight=np.ones(7)), ValueError,
     r"sample_weight must have the rows' shape \(8,\)"),
    (lambda: fxd.evaluate_linear(H2, W2, Y2, weight=np.ones(V - 1)), ValueError, "weight"),
    (lambda: fxd.evaluate_linear(H2, W2, Y2, chunk_rows=0), ValueError, "chunk_rows"),
    (lambda: fxd.evaluate_linear(H2, W2, Y2, topk=(0,)), ValueError, "topk"),
    (lambda: fxd.evaluate_linear(H2, W2, Y2, split_every=1), ValueError, "split_every"),
    (lambda: fxd.evaluate_linear(H2, W2, Y2.astype(str)), TypeError, "target must hold"),
])
def test_bad_arguments_raise_when_the_graph_is_built(call, error, match):
    with dask.config.set(scheduler="sync"):
        with pytest.raises(error, match=match):
            call()
