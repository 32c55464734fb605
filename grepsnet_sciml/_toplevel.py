"""Keep this checkout's ``datasets/`` and ``solvers/`` folders from posing as top-level packages.

The design card keeps the sources of ``grepsnet_sciml.datasets`` and
``grepsnet_sciml.solvers`` in folders named ``datasets/`` and ``solvers/`` at the repository
root. Python started from that root puts the root first on ``sys.path``, so a plain
``import datasets`` would find our folder before Hugging Face's installed ``datasets``.
Each folder's ``__init__`` calls :func:`defer_to_installed` when it is imported under its
bare name: the installed package of that name is loaded in its place, and without one the
import fails as it would outside the checkout.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import os
import sys

__all__ = ["defer_to_installed"]


def defer_to_installed(name: str, init_file: str) -> None:
    """Replace the module being imported as ``name`` by the installed package of that name.

    Parameters
    ----------
    name : str
        The bare name the folder was imported under (``"datasets"`` or ``"solvers"``).
    init_file : str
        ``__file__`` of the folder's ``__init__``; its repository root is left out of the
        search.

    Raises
    ------
    ModuleNotFoundError
        No package ``name`` is installed outside this checkout.
    """
    root = os.path.dirname(os.path.dirname(os.path.abspath(init_file)))
    search = [p for p in sys.path if os.path.abspath(p or os.getcwd()) != root]
    spec = importlib.machinery.PathFinder.find_spec(name, search)
    if spec is None or spec.loader is None:
        del sys.modules[name]
        raise ModuleNotFoundError(
            f"No module named {name!r}: the folder {os.path.dirname(init_file)} of this "
            f"checkout is grepsnet_sciml.{name}; import it as grepsnet_sciml.{name}",
            name=name,
        )
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
