"""fastxent.dask.evaluate and evaluate_linear with groups=, per_class, confusion and prior: the
per-group, per-class and confusion tables merged from the blocks equal fastxent's on the whole
NumPy arrays, on a dask.distributed cluster and on Dask's local schedulers, whatever the
chunks; bad group ids and options raise when the graph is built or name their block."""

import numpy as np
import pytest

da = pytest.importorskip("dask.array")
distributed = pytest.importorskip("distributed")

import dask  # noqa: E402
from dask.utils import key_split  # noqa: E402

import fastxent  # noqa: E402
import fastxent.dask as fxd  # noqa: E402
from helpers import DASK_CHUNKS as CHUNKS  # noqa: E402
from helpers import assert_same_evaluation as _assert_same_evaluation  # noqa: E402
from helpers import dask_block_of_row  # noqa: E402

RTOL = 1e-12            # the merge adds float64 sums: exact up to their rounding
C = 10
N = sum(CHUNKS)
STARTS = np.cumsum((0,) + CHUNKS)
LAST_ID = 97            # the largest group id, only in the last block
ONE_BLOCK_ID = 50       # a group id only in block 5 (rows 458:878)


def make_data(dtype, seed=0):
    """Logits, labels (10 % of them -1), class weights, sample weights and group ids: ids
    0..39 spread over every block, one id only in block 5, the largest only in the last block
    (ids 40..49 and 51..96 unused)."""
    rng = np.random.default_rng(seed)
    z = (3.0 * rng.standard_normal((N, C))).astype(dtype)
    y = rng.integers(0, C, N)
    y[rng.random(N) < 0.1] = -1
    g = rng.integers(0, 40, N)
    g[STARTS[5] + 3:STARTS[5] + 40] = ONE_BLOCK_ID
    g[-5:] = LAST_ID
    return z, y, rng.random(C) + 0.5, rng.random(N), g


def documents(rng, n, mean_length):
    """Document ids 0, 0, ..., 1, 1, ... of random lengths: runs of rows that cross the
    blocks' boundaries, as a token stream's documents do."""
    lengths = rng.integers(1, 2 * mean_length, n)
    return np.repeat(np.arange(n), lengths)[:n]


def assert_same_evaluation(got, want, rtol=RTOL, atol=0.0):
    """Equal up to `rtol` and `atol`: the tables and every other entry of to_dict()."""
    _assert_same_evaluation(got, want, rtol, atol)


# --- evaluate on the cluster -----------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_groups_on_cluster_match_single_machine(on_cluster, dtype):
    z, y, w, s, g = make_data(dtype)
    kw = dict(topk=(1, 3), weight=w, ignore_index=-1)
    zd = da.from_array(z, chunks=(CHUNKS, (4, 6)))              # the class axis is split too
    gd = da.from_array(g, chunks=100)                            # misaligned: rechunked
    with distributed.get_task_stream(on_cluster) as tasks:
        got = fxd.evaluate(zd, y, sample_weight=s, groups=gd, split_every=3, n_threads=1, **kw)
    want = fastxent.evaluate(z, y, sample_weight=s, groups=g, **kw)
    assert_same_evaluation(got, want)
    keys = got.groups.keys
    np.testing.assert_array_equal(keys, np.unique(g[y >= 0]))
    assert keys[-1] == LAST_ID and ONE_BLOCK_ID in keys
    np.testing.assert_array_equal(got.groups.count, np.bincount(g[y >= 0])[keys])
    assert {"evaluate_block", "merge_states", "evaluation_result"} <= {
        key_split(t["key"]) for t in tasks.data}


def test_per_class_confusion_and_prior_on_cluster(on_cluster):
    z, y, w, s, g = make_data(np.float64, seed=1)
    prior = np.random.default_rng(1).random(C) + 0.1
    kw = dict(weight=w, sample_weight=s, ignore_index=-1, per_class=True, confusion=True,
              prior=prior)
    zd = da.from_array(z, chunks=(CHUNKS, C))
    got = fxd.evaluate(zd, da.from_array(y, chunks=250), groups=g, split_every=2, **kw)
    want = fastxent.evaluate(z, y, groups=g, **kw)
    assert_same_evaluation(got, want)
    assert got.prior_source == "given"
    assert got.confusion.shape == (C, C)
    assert got.per_class.count.sum() == got.count
    # each option alone, without groups: no groups table
    for alone in (dict(per_class=True), dict(confusion=True), dict(prior=prior)):
        got = fxd.evaluate(zd, y, ignore_index=-1, **alone)
        assert got.groups is None
        assert_same_evaluation(got, fastxent.evaluate(z, y, ignore_index=-1, **alone))


def test_per_document_perplexity_on_cluster(on_cluster):
    """docs/dask.md's example: documents that cross the blocks' boundaries."""
    rng = np.random.default_rng(2)
    z, y, _, _, _ = make_data(np.float32, seed=2)
    doc = documents(rng, N, 60)
    zd = da.from_array(z, chunks=(CHUNKS, C))
    got = fxd.evaluate(zd, y, groups=da.from_array(doc, chunks=500), ignore_index=-1)
    assert_same_evaluation(got, fastxent.evaluate(z, y, groups=doc, ignore_index=-1))
    np.testing.assert_array_equal(got.groups.keys, np.unique(doc[y >= 0]))
    perplexity = dict(zip(got.groups.keys, got.groups.perplexity, strict=True))
    first = doc == doc[0]
    losses = fastxent.cross_entropy(z[first], np.where(y[first] < 0, 0, y[first]),
                                    reduction="none").astype(np.float64)
    np.testing.assert_allclose(perplexity[doc[0]], np.exp(losses[y[first] >= 0].mean()),
                               rtol=1e-6)


def test_negative_group_id_raises_at_compute_naming_the_block(on_cluster):
    z, y, _, _, g = make_data(np.float64)
    g[1000] = -1
    block = dask_block_of_row(1000)
    start = int(block.split(":")[0])
    zd = da.from_array(z, chunks=(CHUNKS, C))
    lazy = fxd.evaluate(zd, y, groups=g, ignore_index=-1, compute=False)   # builds: no values
    message = (rf"groups\[{1000 - start}\] = -1: group ids must be ints in \[0, 16777215\] .*"
               rf"\(indices within the block of rows \[{block}\]\)")
    with pytest.raises(ValueError, match=message):
        lazy.compute()
    g[1000] = 2**24                                     # above MAX_GROUP_ID
    with pytest.raises(ValueError, match=rf"groups\[{1000 - start}\] = 16777216: .*\[{block}\]"):
        fxd.evaluate(zd, y, groups=g, ignore_index=-1)


# --- evaluate_linear -------------------------------------------------------------------------

D, V = 12, 30


def linear_data(dtype, seed=3):
    rng = np.random.default_rng(seed)
    h = rng.standard_normal((N, D)).astype(dtype)
    w = (0.5 * rng.standard_normal((V, D))).astype(dtype)
    b = (0.1 * rng.standard_normal(V)).astype(dtype)
    y = rng.integers(0, V, N)
    y[rng.random(N) < 0.1] = -1
    return h, w, b, y, rng.random(N), documents(rng, N, 40)


def test_evaluate_linear_with_groups_on_cluster(on_cluster):
    h, w, b, y, s, doc = linear_data(np.float64)
    prior = np.arange(1.0, V + 1)
    kw = dict(topk=(1, 5), ignore_index=-1, per_class=True, confusion=True, prior=prior)
    hd = da.from_array(h, chunks=(CHUNKS, D))
    got = fxd.evaluate_linear(hd, w, y, linear_bias=b, sample_weight=s,
                              groups=da.from_array(doc, chunks=333), chunk_rows=64,
                              split_every=3, **kw)
    want = fastxent.Evaluator(**kw).update_linear(h, w, y, linear_bias=b, sample_weight=s,
                                                  groups=doc).result()
    # the logits round in the last bits where a GEMM covers other rows
    assert_same_evaluation(got, want, rtol=1e-11, atol=1e-12)
    assert_same_evaluation(got, fastxent.evaluate(h @ w.T + b, y, sample_weight=s, groups=doc,
                                                  **kw), rtol=1e-11, atol=1e-12)
    assert got.groups.keys[-1] == doc[y >= 0].max()


@pytest.mark.parametrize("scheduler", ["threads", "sync"])
def test_evaluate_linear_with_groups_on_local_schedulers(scheduler):
    h, w, b, y, _, doc = linear_data(np.float32, seed=4)
    hd = da.from_array(h, chunks=(CHUNKS, D))
    with dask.config.set(scheduler=scheduler):
        got = fxd.evaluate_linear(hd, w, y, groups=doc.astype(np.int32), ignore_index=-1,
                                  n_threads=1)
    want = fastxent.Evaluator(ignore_index=-1).update_linear(h, w, y, groups=doc).result()
    assert_same_evaluation(got, want, rtol=2e-5, atol=1e-12)   # float32 logits' rounding
    doc[-1] = -3
    with dask.config.set(scheduler=scheduler), pytest.raises(
            ValueError, match=rf"groups\[{CHUNKS[-1] - 1}\] = -3: .*\[{N - CHUNKS[-1]}:{N}\]"):
        fxd.evaluate_linear(hd, w, y, groups=doc, ignore_index=-1)


# --- local schedulers, chunks, layouts ---------------------------------------------------------

def test_tables_do_not_depend_on_the_chunks_or_the_tree():
    z, y, w, s, g = make_data(np.float64, seed=5)
    kw = dict(weight=w, sample_weight=s, ignore_index=-1, per_class=True, confusion=True)
    want = fastxent.evaluate(z, y, groups=g, **kw)
    with dask.config.set(scheduler="threads"):
        for chunks, split_every in (((CHUNKS, C), 2), ((N, C), 8), ((1000, 3), 3),
                                    ((97, C), 64)):
            zd = da.from_array(z, chunks=chunks)
            gd = da.from_array(g, chunks=211).astype(np.uint16)      # made by a Dask step
            assert_same_evaluation(
                fxd.evaluate(zd, y, groups=gd, split_every=split_every, n_threads=1, **kw),
                want)
        # NumPy input and a list of ids: wrapped with from_array
        assert_same_evaluation(fxd.evaluate(z, y, groups=g.tolist(), n_threads=1, **kw), want)


def test_rows_on_two_axes_with_the_class_axis_not_last():
    rng = np.random.default_rng(7)
    z = rng.standard_normal((6, 5, 9))                   # (N, C, d) with axis=1
    y, s = rng.integers(0, 5, (6, 9)), rng.random((6, 9))
    g = rng.integers(0, 4, (6, 9))
    g[4:, 8] = 6                                        # the largest id: one block, (4:6, 8:9)
    kw = dict(sample_weight=s, axis=1, topk=(1, 2), per_class=True, confusion=True,
              prior=np.ones(5))
    zd = da.from_array(z, chunks=(2, 2, 4))
    with dask.config.set(scheduler="sync"):
        got = fxd.evaluate(zd, y, groups=da.from_array(g, chunks=(3, 5)), **kw)
        assert_same_evaluation(got, fastxent.evaluate(z, y, groups=g, **kw))
        assert got.groups.keys[-1] == 6
        g[5, 6] = -1                                    # block (4:6, 4:8): its row (1, 2)
        with pytest.raises(ValueError, match=r"groups\[1, 2\] = -1: .*\[4:6, 4:8\]"):
            fxd.evaluate(zd, y, groups=g, **kw)


def test_no_rows_with_groups():
    z, y, g = np.zeros((0, 4)), np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    kw = dict(groups=g, per_class=True, confusion=True)
    with dask.config.set(scheduler="sync"):
        got = fxd.evaluate(da.from_array(z, chunks=(1, 4)), y, **kw)
    assert_same_evaluation(got, fastxent.evaluate(z, y, **kw))


# --- errors when the graph is built ------------------------------------------------------------

def _single_machine_message(call):
    with pytest.raises((TypeError, ValueError)) as info:
        call()
    return type(info.value), str(info.value)


@pytest.mark.parametrize("kw", [
    dict(groups=np.zeros(10)),                                      # float ids
    dict(groups=np.zeros(10, dtype=bool)),
    dict(groups=np.zeros(9, dtype=np.int64)),                       # not the rows' shape
    dict(groups=np.zeros((10, 1), dtype=np.int64)),
    dict(prior=np.ones(3)),                                         # not C entries
    dict(prior=-np.ones(4)),
    dict(per_class="yes"),
    dict(confusion=1.5),
], ids=lambda kw: f"{next(iter(kw))}-{np.shape(next(iter(kw.values())))}")
def test_bad_arguments_raise_when_the_graph_is_built(kw):
    z, y = np.ones((10, 4)), np.zeros(10, dtype=np.int64)
    error, message = _single_machine_message(lambda: fastxent.evaluate(z, y, **kw))
    zd = da.ones((10, 4), chunks=5)
    for groups in ("numpy", "dask"):
        given = dict(kw)
        if groups == "dask" and "groups" in kw:
            given["groups"] = da.from_array(kw["groups"], chunks=3)
        with pytest.raises(error) as info:
            fxd.evaluate(zd, da.from_array(y, chunks=5), compute=False, **given)
        assert str(info.value) == message


def test_bad_arguments_of_evaluate_linear_raise_when_the_graph_is_built():
    h, w, y = np.ones((10, 3)), np.ones((5, 3)), np.zeros(10, dtype=np.int64)
    hd = da.from_array(h, chunks=(4, 3))
    for kw in (dict(groups=np.zeros(10)), dict(groups=np.zeros(11, dtype=np.int64)),
               dict(prior=np.ones(4)), dict(per_class=None)):
        error, message = _single_machine_message(
            lambda kw=kw: fastxent.Evaluator(**{k: x for k, x in kw.items() if k != "groups"})
            .update_linear(h, w, y, groups=kw.get("groups")))
        with pytest.raises(error) as info:
            fxd.evaluate_linear(hd, w, y, compute=False, **kw)
        assert str(info.value) == message, kw


def test_per_class_and_confusion_need_labels():
    rng = np.random.default_rng(8)
    z = rng.standard_normal((10, 4))
    t = rng.random((10, 4))
    t /= t.sum(axis=1, keepdims=True)
    for kw in (dict(per_class=True), dict(confusion=True)):
        with pytest.raises(ValueError, match="need integer class labels, not soft targets"):
            fxd.evaluate(da.from_array(z, chunks=5), t, compute=False, **kw)
        with pytest.raises(ValueError, match="need integer class labels, not soft targets"):
            fxd.evaluate_linear(da.from_array(z, chunks=(5, 4)), np.ones((4, 4)), t,
                                compute=False, **kw)
