"""Fixtures shared by the adapters' tests. Each imports its library only when a test asks for
it, so that the tests of the other adapters run without that library."""

import pytest


@pytest.fixture(scope="module")
def client():
    """A two-process dask.distributed LocalCluster on 127.0.0.1 (no dashboard), one per test
    module, made the scheduler only inside the tests that ask for `on_cluster`."""
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  host="127.0.0.1", dashboard_address=None) as cluster, \
            distributed.Client(cluster, set_as_default=False) as client:
        client.wait_for_workers(2, timeout=60)    # both, before a test counts on them
        yield client


@pytest.fixture
def on_cluster(client):
    """The `client`, made Dask's scheduler for the test."""
    dask = pytest.importorskip("dask")
    with dask.config.set(scheduler=client):
        yield client


@pytest.fixture(scope="module")
def torch_single_threaded():
    """PyTorch on one thread for a test module: its tensors are tiny, and PyTorch's thread pool
    only adds waits (seconds per gradgradcheck on a busy machine)."""
    torch = pytest.importorskip("torch")
    n_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n_threads)
