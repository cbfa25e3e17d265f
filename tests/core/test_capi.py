"""A downstream Cython extension built at test time against fastxent's C-level API."""

import importlib
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

import fastxent

pytest.importorskip("Cython")

DOWNSTREAM = textwrap.dedent('''
    from libc.stdint cimport int64_t
    from fastxent.capi cimport (softmax_cross_entropy_f, softmax_cross_entropy_d,
                                binary_cross_entropy_with_logits_f,
                                binary_cross_entropy_with_logits_d, logsumexp_f, logsumexp_d)

    def softmax_ce_f(const float[:, ::1] z, const int64_t[::1] y, double[::1] loss,
                     float[:, ::1] grad, int n_threads):
        cdef int status
        with nogil:
            status = softmax_cross_entropy_f(&z[0, 0], z.shape[0], z.shape[1], &y[0], &loss[0],
                                             &grad[0, 0], n_threads)
        return status

    def softmax_ce_d_in_place(double[:, ::1] z, const int64_t[::1] y, double[::1] loss):
        cdef int status
        with nogil:
            status = softmax_cross_entropy_d(&z[0, 0], z.shape[0], z.shape[1], &y[0], &loss[0],
                                             &z[0, 0], 2)
        return status

    def softmax_ce_d_loss_only(const double[:, ::1] z, const int64_t[::1] y, double[::1] loss):
        cdef int status
        with nogil:
            status = softmax_cross_entropy_d(&z[0, 0], z.shape[0], z.shape[1], &y[0], &loss[0],
                                             NULL, 1)
        return status

    def bce_f(const float[::1] z, const float[::1] t, float[::1] loss, float[::1] grad):
        cdef int status
        with nogil:
            status = binary_cross_entropy_with_logits_f(&z[0], &t[0], z.shape[0], &loss[0],
                                                        &grad[0], 2)
        return status

    def bce_d(const double[::1] z, const double[::1] t, double[::1] loss, double[::1] grad):
        cdef int status
        with nogil:
            status = binary_cross_entropy_with_logits_d(&z[0], &t[0], z.shape[0], &loss[0],
                                                        &grad[0], 0)
        return status

    def lse_f(const float[:, ::1] x, float[::1] out):
        cdef int status
        with nogil:
            status = logsumexp_f(&x[0, 0], x.shape[0], x.shape[1], &out[0], 1)
        return status

    def lse_d(const double[:, ::1] x, double[::1] out):
        cdef int status
        with nogil:
            status = logsumexp_d(&x[0, 0], x.shape[0], x.shape[1], &out[0], 2)
        return status

    def bad_sizes():
        return softmax_cross_entropy_d(NULL, 3, 0, NULL, NULL, NULL, 1)
''')

SETUP = textwrap.dedent('''
    import sys
    from Cython.Build import cythonize
    from setuptools import Extension, setup
    setup(ext_modules=cythonize([Extension("downstream", ["downstream.pyx"])],
                                include_path=[sys.argv.pop()], language_level=3),
          script_args=["build_ext", "--inplace", "-q"])
''')


@pytest.fixture(scope="module")
def downstream(tmp_path_factory):
    build = tmp_path_factory.mktemp("downstream")
    (build / "downstream.pyx").write_text(DOWNSTREAM)
    (build / "setup.py").write_text(SETUP)
    result = subprocess.run([sys.executable, "setup.py", fastxent.get_include()], cwd=build,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    sys.path.insert(0, str(build))
    try:
        yield importlib.import_module("downstream")
    finally:
        sys.path.remove(str(build))


def _logits(dtype, shape=(300, 17)):
    rng = np.random.default_rng(0)
    return (rng.standard_normal(shape) * 3).astype(dtype), rng.integers(0, shape[1], shape[0])


def test_softmax_cross_entropy_float32(downstream):
    z, y = _logits(np.float32)
    loss, grad = np.empty(len(z)), np.empty_like(z)
    assert downstream.softmax_ce_f(z, y, loss, grad, 2) == 0
    ref_loss, ref_grad = fastxent.cross_entropy_loss_and_grad(z, y, reduction="none")
    np.testing.assert_allclose(loss, ref_loss, rtol=1e-6)
    np.testing.assert_array_equal(grad, ref_grad)


def test_softmax_cross_entropy_float64_in_place_and_loss_only(downstream):
    z, y = _logits(np.float64, (5000, 40))
    ref_loss, ref_grad = fastxent.cross_entropy_loss_and_grad(z, y, reduction="none")
    loss = np.empty(len(z))
    assert downstream.softmax_ce_d_loss_only(z, y, loss) == 0
    np.testing.assert_array_equal(loss, ref_loss)
    assert downstream.softmax_ce_d_in_place(z, y, loss) == 0
    np.testing.assert_array_equal(z, ref_grad)


def test_bad_labels_write_nothing(downstream):
    z, y = _logits(np.float32, (20, 4))
    y[[3, 7]] = [4, -1]
    loss, grad = np.full(20, 7.0), np.full_like(z, 7.0)
    assert downstream.softmax_ce_f(z, y, loss, grad, 1) == 2
    assert np.all(loss == 7.0) and np.all(grad == 7.0)
    assert downstream.bad_sizes() == -1


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_binary_with_logits(downstream, dtype):
    rng = np.random.default_rng(1)
    z = (rng.standard_normal(100_000) * 4).astype(dtype)
    t = rng.uniform(size=z.shape).astype(dtype)
    loss, grad = np.empty_like(z), np.empty_like(z)
    run = downstream.bce_f if dtype == np.float32 else downstream.bce_d
    assert run(z, t, loss, grad) == 0
    ref_loss, ref_grad = fastxent.binary_cross_entropy_loss_and_grad(z, t, reduction="none")
    np.testing.assert_array_equal(loss, ref_loss)
    np.testing.assert_array_equal(grad, ref_grad)
    t[5] = 1.5
    t[9] = np.nan
    loss[:] = 3.0
    assert run(z, t, loss, grad) == 2
    assert np.all(loss == 3.0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_logsumexp(downstream, dtype):
    x, _ = _logits(dtype)
    out = np.empty(len(x), dtype)
    run = downstream.lse_f if dtype == np.float32 else downstream.lse_d
    assert run(x, out) == 0
    np.testing.assert_array_equal(out, fastxent.logsumexp(x))


def test_forked_child_runs_on_one_thread(downstream):
    """A child forked after a two-thread C-level call used to wait forever in its first
    parallel region (GNU OpenMP's pool does not survive fork); it now runs on one thread
    and gets the same result. The parent polls and kills a stuck child after 20 s: a safety
    net, not a wait (a good child answers in milliseconds)."""
    z, y = _logits(np.float64, (2000, 40))
    expected = np.empty(len(z))
    assert downstream.softmax_ce_d_loss_only(z, y, expected) == 0
    first = z.copy()
    assert downstream.softmax_ce_d_in_place(first, y, np.empty(len(z))) == 0   # 2 threads
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:                                                   # the child
        try:
            loss = np.empty(len(z))
            again = z.copy()
            status = downstream.softmax_ce_d_in_place(again, y, loss)
            same = status == 0 and np.array_equal(again, first)
            os.write(write, b"ok" if same else b"wrong")
        finally:
            os._exit(0)
    os.close(write)
    deadline = time.monotonic() + 20
    while os.waitpid(pid, os.WNOHANG) == (0, 0):
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            pytest.fail("the forked child hung in its first threaded C-level call")
        time.sleep(0.01)
    assert os.read(read, 10) == b"ok"
    os.close(read)


_FORK_AFTER_PYTHON_THREADS = textwrap.dedent('''
    import os, signal, sys
    import numpy as np
    import fastxent
    sys.path.insert(0, sys.argv[1])
    import downstream
    rng = np.random.default_rng(0)
    z = rng.standard_normal((4000, 40))
    y = rng.integers(0, 40, 4000)
    # only the Python layer has started threads (2) in this process
    _, expected = fastxent.cross_entropy_loss_and_grad(z, y, reduction="none", n_threads=2)
    pid = os.fork()
    if pid == 0:
        signal.alarm(10)                               # a hung child dies in 10 s
        again = z.copy()
        ok = downstream.softmax_ce_d_in_place(again, y, np.empty(len(z))) == 0
        os._exit(0 if ok and np.array_equal(again, expected) else 3)
    _, status = os.waitpid(pid, 0)
    sys.exit(os.waitstatus_to_exitcode(status))
''')


def test_forked_child_after_python_level_threads_runs_on_one_thread(downstream):
    """Threads started by the Python API also make the C API run on one thread in a forked
    child: the Python layer tells the kernel set, whose fork handler guards the C API."""
    result = subprocess.run([sys.executable, "-c", _FORK_AFTER_PYTHON_THREADS,
                             os.path.dirname(downstream.__file__)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_capi_refuses_a_kernel_function_of_another_signature():
    """fastxent.capi checks the C signature of every kernel function it takes (the name
    Cython gives its capsule) and names the function when one differs. Run in a fresh
    interpreter whose kernel modules export capi_logsumexp_f's capsule as capi_logsumexp_d."""
    code = textwrap.dedent('''
        import sys
        import fastxent
        assert "fastxent.capi" not in sys.modules
        exported = [getattr(m, "__pyx_capi__", {}) for n, m in list(sys.modules.items())
                    if n.startswith("fastxent.")]
        exported = [e for e in exported if "capi_logsumexp_d" in e]
        assert exported
        for e in exported:
            e["capi_logsumexp_d"] = e["capi_logsumexp_f"]
        try:
            import fastxent.capi
        except ImportError as exc:
            print(exc)
    ''')
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "capi_logsumexp_d has the C signature 'int (float const *" in result.stdout
    assert "expected 'int (double const *, Py_ssize_t, Py_ssize_t, double *, int)'" in (
        result.stdout)
