"""The repository's datasets/ and solvers/ folders never pose as top-level packages."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _python(code: str, pythonpath: str | None = None) -> subprocess.CompletedProcess:
    env = {"PATH": "/usr/bin:/bin"}
    if pythonpath is not None:
        env["PYTHONPATH"] = pythonpath
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("name", ["datasets", "solvers"])
def test_installed_package_of_the_same_name_wins_from_the_repository_root(name, tmp_path):
    package = tmp_path / name
    package.mkdir()
    (package / "__init__.py").write_text("MARKER = 'installed'\n")
    (package / "sub.py").write_text("VALUE = 42\n")
    run = _python(f"import {name}, {name}.sub; print({name}.MARKER, {name}.sub.VALUE, "
                  f"{name}.__file__)", pythonpath=str(tmp_path))
    assert run.returncode == 0, run.stderr
    marker, value, path = run.stdout.split()
    assert (marker, value) == ("installed", "42")
    assert Path(path) == package / "__init__.py"


@pytest.mark.parametrize("name", ["datasets", "solvers"])
def test_bare_import_without_an_installed_package_fails_and_points_to_ours(name):
    run = _python(f"import {name}")
    assert run.returncode == 1
    assert f"No module named '{name}'" in run.stderr
    assert f"import it as grepsnet_sciml.{name}" in run.stderr


def test_our_subpackages_import_under_their_full_names():
    run = _python("import grepsnet_sciml.datasets as d, grepsnet_sciml.solvers as s; "
                  "print(d.__name__, s.__name__, d.open_dataset.__module__)")
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["grepsnet_sciml.datasets", "grepsnet_sciml.solvers",
                                  "grepsnet_sciml.datasets.storage"]
