"""The package installs as one namespace, from an editable install and from a built wheel."""

import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SUBPACKAGES = ("grepsnet_sciml", "grepsnet_sciml.datasets", "grepsnet_sciml.solvers")
IMPORT_CHECK = (
    "import importlib, json, sys; "
    f"mods = [importlib.import_module(n) for n in {SUBPACKAGES!r}]; "
    "print(json.dumps([m.__file__ for m in mods])); "
    "from grepsnet_sciml.cli import build_parser; build_parser(); "
    "sys.exit('a top-level datasets module is installed' "
    "if importlib.util.find_spec('datasets') and "
    "'grepsnet' in (importlib.util.find_spec('datasets').origin or '') else 0)"
)


def test_every_package_folder_is_listed_in_pyproject():
    import tomllib

    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
                 ["packages"])
    found = {"grepsnet_sciml.datasets", "grepsnet_sciml.solvers"}
    for init in (ROOT / "grepsnet_sciml").rglob("__init__.py"):
        found.add(".".join(init.parent.relative_to(ROOT).parts))
    assert found == listed


def test_editable_install_imports_all_subpackages():
    out = subprocess.run(
        [sys.executable, "-c", IMPORT_CHECK], capture_output=True, text=True, cwd="/"
    )
    assert out.returncode == 0, out.stderr
    files = [Path(p) for p in __import__("json").loads(out.stdout)]
    assert files[1].parent == ROOT / "datasets"
    assert files[2].parent == ROOT / "solvers"


def test_wheel_in_fresh_venv_imports_all_subpackages(tmp_path):
    dist = tmp_path / "dist"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "--no-build-isolation",
         "-q", "-w", str(dist)],
        check=True, capture_output=True, cwd=tmp_path,
    )
    wheel = next(dist.glob("grepsnet_sciml-*.whl"))
    env_dir = tmp_path / "fresh"
    venv.create(env_dir, with_pip=False)
    fresh_python = env_dir / "bin" / "python"
    fresh_site = subprocess.run(
        [str(fresh_python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True, capture_output=True, text=True,
    ).stdout.strip()
    # The fresh environment sees the dependencies (torch, xarray, ...) of the test environment
    # through a plain path entry; .pth hooks there (the editable install) are not processed.
    Path(fresh_site, "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", fresh_site,
         str(wheel)],
        check=True, capture_output=True,
    )
    out = subprocess.run(
        [str(fresh_python), "-c", IMPORT_CHECK], capture_output=True, text=True, cwd=tmp_path
    )
    assert out.returncode == 0, out.stderr
    for path in __import__("json").loads(out.stdout):
        assert Path(path).is_relative_to(fresh_site), path
    names = subprocess.run(
        [sys.executable, "-m", "zipfile", "-l", str(wheel)], capture_output=True, text=True
    ).stdout
    assert "grepsnet_sciml/datasets/__init__.py" in names
    assert "\ndatasets/" not in names
