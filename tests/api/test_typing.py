"""Typing: the stubs match the runtime signatures, and ``mypy --strict`` accepts a small
program using the public API (and rejects a wrong one)."""

import ast
import importlib
import inspect
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


def test_py_typed_marker_and_stubs_ship():
    assert (PACKAGE / "py.typed").is_file()
    for stub in ("__init__.pyi", "sklearn.pyi", "torch.pyi", "dask.pyi", "_core/_kernels_baseline.pyi"):
        assert (PACKAGE / stub).is_file(), stub


def _stub_signatures(stub):
    """{function or Class.method: [(parameter name, kind, has default)]} from a .pyi file;
    overloads must agree."""
    tree = ast.parse((PACKAGE / stub).read_text())
    found = {}

    def params(fn):
        a = fn.args
        pos = a.posonlyargs + a.args
        defaults = [False] * (len(pos) - len(a.defaults)) + [True] * len(a.defaults)
        out = [(p.arg, "pos", d) for p, d in zip(pos, defaults)]
        out += [(p.arg, "kw", d is not None) for p, d in zip(a.kwonlyargs, a.kw_defaults)]
        return out

    for node in tree.body:
        items = [(node.name, node)] if isinstance(node, ast.FunctionDef) else []
        if isinstance(node, ast.ClassDef):
            items = [(f"{node.name}.{f.name}", f) for f in node.body
                     if isinstance(f, ast.FunctionDef)]
            found.setdefault(node.name, [])      # a class without methods (an exception)
        for name, fn in items:
            sig = params(fn)
            if any(isinstance(d, ast.Name) and d.id == "classmethod" for d in fn.decorator_list):
                sig = sig[1:]                    # the runtime signature is bound: no cls
            if name in found and not any(isinstance(d, ast.Name) and d.id == "overload"
                                         for d in fn.decorator_list):
                raise AssertionError(f"{stub}: {name} defined twice")
            found.setdefault(name, []).append(sig)
    return found


def _runtime_signature(obj):
    kinds = {inspect.Parameter.POSITIONAL_ONLY: "pos",
             inspect.Parameter.POSITIONAL_OR_KEYWORD: "pos",
             inspect.Parameter.KEYWORD_ONLY: "kw"}
    return [(p.name, kinds[p.kind], p.default is not inspect.Parameter.empty)
            for p in inspect.signature(obj).parameters.values()]


@pytest.mark.parametrize("module, stub, needs", [("fastxent", "__init__.pyi", None),
                                                 ("fastxent.sklearn", "sklearn.pyi", "sklearn"),
                                                 ("fastxent.torch", "torch.pyi", "torch"),
                                                 ("fastxent.dask", "dask.pyi", "dask")])
def test_stub_signatures_match_runtime(module, stub, needs):
    if needs:
        pytest.importorskip(needs)
    mod = importlib.import_module(module)
    stubs = _stub_signatures(stub)
    public = set(mod.__all__) - {"__version__"}
    names = {name.split(".")[0] for name in stubs}
    assert names == public, f"{stub} covers {sorted(names)}, {module}.__all__ is {sorted(public)}"
    for name, overloads in stubs.items():
        obj = mod
        for part in name.split("."):
            obj = getattr(obj, part)
        if not overloads:
            continue
        runtime = _runtime_signature(obj)
        for sig in overloads:
            # overloads may make a defaulted argument required (reduction: Literal["none"])
            assert [p[:2] for p in sig] == [p[:2] for p in runtime], name
            assert all(s[2] <= r[2] for s, r in zip(sig, runtime)), name


def _in_site_packages(path):
    """True for a regular install (mypy finds it, and refuses it on MYPYPATH)."""
    roots = site.getsitepackages() + [site.getusersitepackages()]
    return any(path.resolve() == pathlib.Path(root).resolve() for root in roots)


def _mypy(tmp_path, *args):
    pytest.importorskip("mypy")
    env = dict(os.environ)
    if not _in_site_packages(ROOT):
        env["MYPYPATH"] = str(ROOT)     # an editable install is invisible to mypy otherwise
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
