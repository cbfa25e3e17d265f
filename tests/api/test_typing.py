"""Typing: the stubs match the runtime signatures, and ``mypy --strict`` accepts a small
program using the public API (and rejects a wrong one)."""

import importlib
import os
import pathlib
import shutil
import site
import subprocess
import sys

import pytest

import fastxent

PACKAGE = pathlib.Path(fastxent.__file__).parent
ROOT = PACKAGE.parent
EXAMPLE = pathlib.Path(__file__).with_name("typing_example.py")
ALLOWLIST = pathlib.Path(__file__).with_name("stubtest-allowlist.txt")
CHECKOUT = pathlib.Path(__file__).resolve().parents[2]


def test_py_typed_marker_and_stubs_ship():
    assert (PACKAGE / "py.typed").is_file()
    for stub in ("__init__.pyi", "sklearn.pyi", "torch.pyi", "dask.pyi", "capi.pyi",
                 "xgboost.pyi", "lightgbm.pyi",
                 "_core/_kernels_baseline.pyi"):
        assert (PACKAGE / stub).is_file(), stub


def test_stubs_match_runtime(tmp_path):
    """mypy.stubtest finds no difference between the stubs and the runtime modules."""
    pytest.importorskip("mypy")
    config = CHECKOUT / "pyproject.toml"
    if not config.is_file():
        pytest.skip("needs the checkout's pyproject.toml (the mypy settings)")
    allowlists = ["--allowlist", str(ALLOWLIST)]
    if not _imports("torch"):
        # PyTorch is an optional peer: without it fastxent.torch cannot import, and only the
        # rest of the stubs can be compared with the runtime.
        unchecked = tmp_path / "without-torch.txt"
        unchecked.write_text("fastxent\\.torch\n")
        allowlists += ["--allowlist", str(unchecked)]
    result = subprocess.run(
        [sys.executable, "-m", "mypy.stubtest", "fastxent", "--mypy-config-file", str(config),
         *allowlists, "--concise"],
        capture_output=True, text=True, cwd=tmp_path, env=_mypy_env(), timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr


def _imports(module):
    """True when ``module`` imports here (an installed module can still fail to import)."""
    try:
        importlib.import_module(module)
    except ImportError:
        return False
    return True


def _in_site_packages(path):
    """True for a regular install (mypy finds it, and refuses it on MYPYPATH)."""
    roots = site.getsitepackages() + [site.getusersitepackages()]
    return any(path.resolve() == pathlib.Path(root).resolve() for root in roots)


def _mypy_env():
    env = dict(os.environ)
    if not _in_site_packages(ROOT):
        env["MYPYPATH"] = str(ROOT)     # an editable install is invisible to mypy otherwise
    return env


def _mypy(tmp_path, *args):
    pytest.importorskip("mypy")
    env = _mypy_env()
    cmd = [sys.executable, "-m", "mypy", "--strict", "--no-error-summary",
           "--cache-dir", str(tmp_path.parent / "mypy-cache"), *args]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, env=env,
                          timeout=300)


def test_mypy_strict_accepts_example(tmp_path):
    shutil.copy(EXAMPLE, tmp_path / "example.py")
    result = _mypy(tmp_path, "example.py")
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_strict_rejects_misuse(tmp_path):
    (tmp_path / "bad.py").write_text(
        "import numpy as np\n"
        "import fastxent\n"
        "x = np.zeros((2, 3))\n"
        "rows: float = fastxent.cross_entropy(x, [0, 1], reduction='none')\n"
        "fastxent.softmax(x, axis=1, n_threads='2')\n"
        "fastxent.binary_cross_entropy(x, x, weight=None, eps='1e-7')\n")
    result = _mypy(tmp_path, "bad.py")
    assert result.returncode == 1, result.stdout + result.stderr
    assert [line.split(":")[1] for line in result.stdout.splitlines()
            if ": error:" in line] == ["4", "5", "6"], result.stdout
