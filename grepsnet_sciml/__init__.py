"""grepsnet-sciml: symmetry-exact surrogate solvers built on G-RepsNet tensor representations.

Public API
----------
- :mod:`grepsnet_sciml.groups`: matrix groups (``C4``, ``D4``, ``O``, ``SO``, ``Lorentz``, ...).
- :class:`Reps`: typed representations with a flat channel layout.
- :mod:`grepsnet_sciml.layers`: tensor conversions and G-RepsNet layers.
- :mod:`grepsnet_sciml.testing`: ``assert_equivariant``.
- :mod:`grepsnet_sciml.datasets`, :mod:`grepsnet_sciml.solvers`: data and training.
"""

from . import groups
from .reps import Reps

__all__ = ["Reps", "groups", "__version__"]
__version__ = "0.1.0"
