"""Fixtures of the pytest-benchmark suite; the workloads themselves live in fastxent._bench."""

import functools

import pytest

import fastxent
from fastxent import _bench


@pytest.fixture(scope="session")
def threads():
    """Threads given to fastxent and to every peer that accepts a thread count."""
    return fastxent.effective_n_threads()


@pytest.fixture(scope="session")
def workload_data():
    """``make_data`` that keeps the latest workload's data for the implementations that follow."""
    return functools.lru_cache(maxsize=1)(_bench.make_data)


@pytest.fixture(scope="session")
def fastxent_loss(workload_data, threads):
    """fastxent's loss on a workload, which every peer's loss must match."""
    @functools.lru_cache(maxsize=1)
    def loss(workload):
        return _bench.prepare("fastxent", workload, workload_data(workload), threads)()
    return loss


def pytest_benchmark_update_machine_info(config, machine_info):
    """Record the fastxent build, thread count and peer versions with the results."""
    threads = fastxent.effective_n_threads()
    machine_info["fastxent"] = _bench.machine_info(threads, _bench.available_peers())
