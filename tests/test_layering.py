"""The package's data flows one way, from the public API down to the kernels.

Every ``fastxent`` import in the package's sources (module level or inside a function) is
read with ``ast`` and checked against the layers below: a part may import only the parts its
row names. ``fastxent`` alone means the public API (``import fastxent`` or names from it).
"""

import ast
import pathlib
import re

import pytest

SOURCE = pathlib.Path(__file__).resolve().parents[1] / "fastxent"

# part -> the parts it may import (besides itself)
ALLOWED = {
    "_version": set(),
    "_warnings": set(),
    "_core": {"_version", "_warnings"},
    "capi": {"_core"},
    "_api": {"_core", "_warnings"},
    "_eval": {"_api", "_core"},
    "fastxent": {"_api", "_core", "_eval", "_version"},
    "torch": {"fastxent", "_api"},
    "sklearn": {"fastxent"},
    "_boosting": {"fastxent"},
    "xgboost": {"fastxent", "_boosting"},
    "lightgbm": {"_boosting"},
    "dask": {"fastxent", "_api"},
    "_bench": {"fastxent", "xgboost"},
    "cli": {"fastxent", "_bench", "_eval", "_api"},
}


SOURCES = sorted(p for p in SOURCE.rglob("*") if p.suffix in (".py", ".pyx", ".pxd", ".pxi"))
SUBMODULES = {p.stem for p in SOURCE.iterdir() if p.suffix in (".py", ".pyx") or p.is_dir()}


def _part(module):
    """The part of the package a dotted module name belongs to."""
    names = module.split(".")
    if names[0] != "fastxent":
        return None
    return names[1] if len(names) > 1 and names[1] != "__init__" else "fastxent"


def _source_part(path):
    relative = path.relative_to(SOURCE).with_suffix("")
    return _part(".".join(("fastxent",) + relative.parts))


def _imported_modules(path):
    """Every fastxent module a Python or Cython source imports."""
    text = path.read_text(encoding="utf-8")
    if path.suffix != ".py":                     # Cython: its Python-level imports
        return re.findall(r"^\s*(?:from|import)\s+(fastxent[\w.]*)", text, flags=re.M)
    found = []
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "fastxent":        # `from fastxent import capi` is a module
                found += [f"fastxent.{alias.name}" if alias.name in SUBMODULES
                          else "fastxent" for alias in node.names]
            else:
                found.append(node.module)
    return [name for name in found if _part(name) is not None]


def test_every_part_has_a_row():
    parts = {_source_part(path) for path in SOURCES}
    assert parts <= set(ALLOWED), sorted(parts - set(ALLOWED))


def test_every_allowed_edge_is_used():
    """The table is the layering as it is (docs/design.md shows it): no edge allowed in advance."""
    used = {part: set() for part in ALLOWED}
    for path in SOURCES:
        own = _source_part(path)
        used[own] |= {_part(name) for name in _imported_modules(path)} - {own}
    assert used == ALLOWED


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(SOURCE)))
def test_imports_follow_the_layers(path):
    own = _source_part(path)
    wrong = [name for name in _imported_modules(path)
             if _part(name) != own and _part(name) not in ALLOWED[own]]
    assert not wrong, f"{own} may import only {sorted(ALLOWED[own])}, not {wrong}"


def test_a_wrong_import_is_found(tmp_path):
    """The check itself: a kernel module importing the API layer is caught."""
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from fastxent._api import validation\n"
                   "from fastxent import _eval, capi, cross_entropy\nimport numpy\n")
    assert sorted(_imported_modules(bad)) == ["fastxent", "fastxent._api", "fastxent._eval",
                                               "fastxent.capi"]
    wrong = [name for name in _imported_modules(bad) if _part(name) not in ALLOWED["_core"]]
    assert len(wrong) == 4
