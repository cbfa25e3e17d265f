"""Every ``fastxent.<name>`` the README and the docs mention imports from where they say.

The names are read from the documents themselves, so a name that a later layout moves (or a
document that starts naming a new one) is checked without editing this test.
"""

import importlib
import logging
import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
DOTTED_NAME = re.compile(r"\bfastxent(?:\.[A-Za-z_][A-Za-z_0-9]*)+")
FROM_IMPORT = re.compile(r"^\s*from (fastxent[\w.]*) import ([\w, ]+)$", re.MULTILINE)
#: Dotted names the documents use for loggers, not for importable objects.
LOGGERS = {"fastxent.eval"}
#: Modules a cimport names (Cython declarations, not Python attributes).
CIMPORTED = re.compile(r"^\s*from (fastxent[\w.]*) cimport ([\w, ]+)$", re.MULTILINE)


def _documented_names():
    names = set()
    for path in DOCUMENTS:
        text = path.read_text(encoding="utf-8")
        names.update(DOTTED_NAME.findall(text))
        for module, imported in FROM_IMPORT.findall(text):
            names.update(f"{module}.{name.strip()}" for name in imported.split(","))
    return sorted(names - LOGGERS)


def _resolve(dotted):
    """Import the longest module prefix of ``dotted`` and look the rest up as attributes."""
    parts = dotted.split(".")
    for split in range(len(parts), 0, -1):
        try:
            target = importlib.import_module(".".join(parts[:split]))
        except ModuleNotFoundError:
            continue
        for attribute in parts[split:]:
            target = getattr(target, attribute)
        return target
    raise ModuleNotFoundError(dotted)


def test_the_documents_name_fastxent_objects():
    # the scan finds the names a user meets first; an empty or broken scan would pass vacuously
    names = _documented_names()
    for expected in ("fastxent.cross_entropy", "fastxent.evaluate", "fastxent.torch.cross_entropy",
                     "fastxent.sklearn.log_loss", "fastxent.dask.evaluate", "fastxent.capi"):
        assert expected in names


@pytest.mark.parametrize("dotted", _documented_names())
def test_documented_name_imports(dotted):
    if dotted.split(".")[1] in {"torch", "dask"}:
        pytest.importorskip(dotted.split(".")[1])
    assert _resolve(dotted) is not None


@pytest.mark.parametrize("logger", sorted(LOGGERS))
def test_documented_logger_is_the_one_used(logger):
    from fastxent._eval import files

    assert files.logger is logging.getLogger(logger)


def test_cimported_names_are_declared():
    declared = (ROOT / "fastxent" / "capi.pxd").read_text(encoding="utf-8")
    for path in DOCUMENTS:
        for module, names in CIMPORTED.findall(path.read_text(encoding="utf-8")):
            assert module == "fastxent.capi"
            for name in names.split(","):
                assert re.search(rf"\b{name.strip()}\b", declared), name.strip()
