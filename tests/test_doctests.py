"""Run every docstring example in the installed package."""

import doctest
import importlib
import pkgutil

import pytest


def _modules():
    # grepsnet_sciml.datasets and .solvers live in other folders (setuptools package-dir),
    # so each top package is walked from its own __path__.
    names = set()
    for top in ("grepsnet_sciml", "grepsnet_sciml.datasets", "grepsnet_sciml.solvers"):
        package = importlib.import_module(top)
        names.add(top)
        for info in pkgutil.walk_packages(package.__path__, top + "."):
            names.add(info.name)
    return sorted(names)


@pytest.mark.parametrize("name", _modules())
def test_doctests(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0, f"{result.failed} doctest(s) failed in {name}"
