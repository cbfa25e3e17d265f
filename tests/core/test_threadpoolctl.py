"""threadpoolctl limits fastxent's OpenMP threads (through libgomp's omp_set_num_threads)."""

import os

import numpy as np
import pytest

threadpoolctl = pytest.importorskip("threadpoolctl")

import fastxent  # noqa: E402
from fastxent._core.threads import _usable_cpus  # noqa: E402

pytestmark = pytest.mark.skipif(not fastxent.config()["openmp"],
                                reason="fastxent was built without OpenMP")


def test_threadpoolctl_sees_an_openmp_runtime():
    apis = {info["user_api"] for info in threadpoolctl.threadpool_info()}
    assert "openmp" in apis


def test_threadpool_limits_one_limits_fastxent():
    before = fastxent.effective_n_threads()
    if _usable_cpus() > 1 and not os.environ.get("OMP_NUM_THREADS"):
        assert before > 1
    with threadpoolctl.threadpool_limits(limits=1):
        assert fastxent.effective_n_threads() == 1
        assert fastxent.effective_n_threads(-1) == 1            # counts back from the limit
        assert fastxent.config()["default_threads"] == 1
        assert fastxent.effective_n_threads(3) == 3             # an explicit count wins
    assert fastxent.effective_n_threads() == before
    with threadpoolctl.threadpool_limits(limits=1, user_api="openmp"):
        assert fastxent.effective_n_threads() == 1
    with threadpoolctl.threadpool_limits(limits=1, user_api="blas"):
        assert fastxent.effective_n_threads() == before        # fastxent calls no BLAS
    assert fastxent.effective_n_threads() == before


def test_threadpool_limits_as_decorator_and_same_results():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4096, 20)).astype(np.float32)    # above the serial threshold
    y = rng.integers(0, 20, 4096)
    outside = fastxent.cross_entropy_loss_and_grad(x, y)

    @threadpoolctl.threadpool_limits.wrap(limits=1)
    def limited():
        assert fastxent.effective_n_threads() == 1
        return fastxent.cross_entropy_loss_and_grad(x, y)

    inside = limited()
    assert inside[0] == outside[0]                            # bitwise, any thread count
    np.testing.assert_array_equal(inside[1], outside[1])
