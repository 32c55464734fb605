"""Models: equivariant surrogates and the baselines they are compared with.

- :class:`GRepsFNO2d`: Fourier neural operator whose channels are typed G-RepsNet fields
  (exactly C4/D4-equivariant, pseudo-scalar aware); :class:`GFNO2d`: G-FNO baseline
  (Helwig et al. 2023).
- :class:`GRepsNBody`: E(3) x S_n-equivariant N-body predictor with G-RepsNet features;
  :class:`EGNN`: EGNN baseline (Satorras et al. 2021).
- :class:`FNOBaseline` (neuraloperator's FNO as users run it) and :class:`ParticleMPNN`:
  non-equivariant reference models.
"""

from .baselines import FNOBaseline, ParticleMPNN
from .egnn import EGNN
from .gfno import GFNO2d
from .grepsfno import GRepsFNO2d, reps_from_attrs
from .nbody import GRepsNBody

__all__ = [
    "GRepsFNO2d",
    "GFNO2d",
    "GRepsNBody",
    "EGNN",
    "FNOBaseline",
    "ParticleMPNN",
    "reps_from_attrs",
]
