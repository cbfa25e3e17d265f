"""The build: OpenMP, the kernel instruction sets, libmvec, show_config."""

import importlib.metadata
import importlib.util
import json
import os
import platform
import shutil
import subprocess
import sys

import numpy as np
import pytest

import fastxent
from fastxent._core import dispatch as _dispatch

X86_GLIBC = (platform.machine().lower() in ("x86_64", "amd64")
             and platform.libc_ver()[0] == "glibc")


def test_config_keys():
    """config() describes the build."""
    cfg = fastxent.config()
    for key in ("version", "openmp", "default_threads", "isa", "isas_supported", "libmvec",
                "compiler", "cflags"):
        assert key in cfg
    assert cfg["version"] == fastxent.__version__
    assert cfg["isa"] in cfg["isas_supported"]
    assert cfg["isas_supported"][0] == "baseline"
    assert cfg["default_threads"] == fastxent.effective_n_threads()


def test_version_matches_metadata():
    """__version__ is the installed distribution's version."""
    try:
        dist_version = importlib.metadata.version("fastxent")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("fastxent is not installed as a distribution")
    assert fastxent.__version__ == dist_version


@pytest.mark.skipif(bool(os.environ.get("FASTXENT_SKIP_OPENMP_TEST")),
                    reason="FASTXENT_SKIP_OPENMP_TEST is set")
def test_openmp_enabled():
    """fastxent is built with OpenMP (set FASTXENT_SKIP_OPENMP_TEST to allow a serial build)."""
    assert fastxent.config()["openmp"] is True
    assert "openmp" in fastxent.config()["cflags"]


def test_no_fast_math():
    """NaN and inf must keep their meaning: no -ffast-math / -Ofast."""
    cflags = fastxent.config()["cflags"]
    assert "-ffast-math" not in cflags
    assert "-Ofast" not in cflags
    assert "-ffinite-math-only" not in cflags


def test_show_config(capsys):
    """show_config prints version, OpenMP, threads, instruction set and flags."""
    fastxent.show_config()
    printed = capsys.readouterr().out
    cfg = fastxent.config()
    lines = {line.split(":", 1)[0].strip(): line.split(":", 1)[1].strip()
             for line in printed.splitlines() if ":" in line}
    assert lines["version"] == cfg["version"]
    assert lines["openmp"] == str(cfg["openmp"])
    assert lines["isa"] == cfg["isa"]
    assert lines["cflags"] == cfg["cflags"]
    assert lines["default_threads"] == str(cfg["default_threads"])


@pytest.mark.skipif(not X86_GLIBC, reason="libmvec is glibc's, on x86-64")
def test_libmvec_on_x86_64_glibc():
    """On x86-64 glibc the kernels call glibc's vector exp/log (libmvec)."""
    assert fastxent.config()["libmvec"] is True


@pytest.mark.skipif(not X86_GLIBC or shutil.which("nm") is None,
                    reason="needs x86-64 glibc and nm")
def test_kernels_import_zgv_symbols():
    """The kernel set in use calls libmvec's vector exp/log/log1p for float64 and its
    vector log/log1p for float32 (_ZGV symbols, nm -D); the float32 exp is inlined, so no
    expf is imported, scalar or vector."""
    path = _dispatch.kernels.__file__
    out = subprocess.run(["nm", "-D", "--undefined-only", path], capture_output=True,
                         text=True, check=True).stdout
    names = [line.split()[-1].split("@")[0] for line in out.splitlines()]
    zgv = [name for name in names if name.startswith("_ZGV")]
    for function in ("exp", "log", "log1p", "logf", "log1pf"):
        assert any(name.endswith("v_" + function) for name in zgv), (function, zgv)
    assert not [name for name in names if "expf" in name], names


_PROBE = """
import json, numpy as np, fastxent
rng = np.random.default_rng(0)
x = rng.normal(0, 4, size=(300, 37)); y = rng.integers(0, 37, size=300)
l, g = fastxent.cross_entropy_loss_and_grad(x, y, reduction="none", label_smoothing=0.1)
b, bg = fastxent.binary_cross_entropy_loss_and_grad(x, rng.uniform(size=x.shape),
                                                    reduction="none")
x32 = x.astype(np.float32)
l32 = fastxent.cross_entropy(x32, y, reduction="none")
print(json.dumps({"isa": fastxent.config()["isa"], "l": l.tolist(), "g": g.ravel().tolist(),
                  "b": b.ravel().tolist(), "bg": bg.ravel().tolist(), "l32": l32.tolist()}))
"""


def _run_probe(isa):
    env = dict(os.environ, FASTXENT_ISA=isa)
    proc = subprocess.run([sys.executable, "-c", _PROBE], env=env, capture_output=True,
                          text=True)
    return proc


def _built_isas():
    return [isa for isa in _dispatch.supported()
            if importlib.util.find_spec(f"fastxent._core._kernels_{isa}") is not None]


def test_every_built_isa_agrees():
    """Each built instruction set (FASTXENT_ISA=...) gives the same numbers to rounding."""
    results = {}
    for isa in _built_isas():
        proc = _run_probe(isa)
        assert proc.returncode == 0, proc.stderr
        results[isa] = json.loads(proc.stdout)
        assert results[isa]["isa"] == isa
    base = results.pop("baseline")
    for isa, res in results.items():
        for key in ("l", "g", "b", "bg"):
            np.testing.assert_allclose(res[key], base[key], rtol=1e-13, atol=1e-16,
                                       err_msg=f"{isa} {key}")
        np.testing.assert_allclose(res["l32"], base["l32"], rtol=1e-6, err_msg=f"{isa} l32")


@pytest.mark.parametrize("isa", ["baseline", "avx2", "avx512"])
def test_accuracy_bounds_hold_for_every_built_isa(isa):
    """The README's accuracy bounds (tests/core/test_precision.py's `within_ulps` tests) for each
    built kernel set, not only the one chosen at import."""
    if isa not in _built_isas():
        pytest.skip(f"{isa} is not built or not supported by this CPU")
    precision = os.path.join(os.path.dirname(os.path.abspath(__file__)), "test_precision.py")
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           precision, "-k", "within_ulps"], capture_output=True, text=True,
                          env=dict(os.environ, FASTXENT_ISA=isa), timeout=60)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert " passed" in proc.stdout and "failed" not in proc.stdout


_X87_PROBE = """
import numpy as np, fastxent
def x87_ok():
    e = np.exp(np.array([-700.0, -30.0], dtype=np.longdouble))
    return bool(np.all(np.isfinite(e / (1 + e))))
rng = np.random.default_rng(0)
ok = [x87_ok()]
for dtype in (np.float32, np.float64):
    for C in (10, 100, 1000):
        x = rng.standard_normal((50, C)).astype(dtype)
        y = rng.integers(0, C, 50)
        fastxent.cross_entropy_loss_and_grad(x, y)
        fastxent.cross_entropy(x, y, label_smoothing=0.1)
        fastxent.evaluate(x, y)
        fastxent.softmax(x), fastxent.log_softmax(x), fastxent.logsumexp(x)
        fastxent.binary_cross_entropy_loss_and_grad(x, rng.uniform(size=x.shape))
        ok.append(x87_ok())
print(ok)
"""


def test_every_built_isa_leaves_the_x87_unit_usable():
    """No kernel leaves MMX state behind (GCC once moved SSE2 reduction values through MMX
    registers without emms): long double arithmetic after any call must still work."""
    for isa in _built_isas():
        env = dict(os.environ, FASTXENT_ISA=isa)
        proc = subprocess.run([sys.executable, "-c", _X87_PROBE], env=env,
                              capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.strip() == str([True] * 7), (isa, proc.stdout)


def test_bad_isa_env_fails_loudly():
    """An unknown FASTXENT_ISA is an ImportError, not a silent fallback."""
    proc = _run_probe("sse9")
    assert proc.returncode != 0
    assert "FASTXENT_ISA" in proc.stderr
