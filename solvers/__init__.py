"""Surrogate solvers: training, rollout, evaluation and symmetry diagnostics.

Imported as ``grepsnet_sciml.solvers``.

- data: :class:`FieldWindows`, :class:`ParticlePairs` (torch datasets from generated data)
- normalisation: :class:`Normalizer`, :class:`NormalizedModel` (one scale per field, equivariant)
- training: :class:`Trainer`, :class:`TrainConfig`, typed experiment configs, :func:`train`
- models: :data:`REGISTRY` of named models with typed configs, :func:`register_model`
- rollout: :func:`rollout` (pure, streaming), :func:`solver_rollout` (the numerical solver)
- evaluation: :func:`evaluate`, :func:`symmetry_consistency`
"""

if __name__ != "grepsnet_sciml.solvers":  # the folder imported by its bare name
    import os
    import runpy

    # by path: importing grepsnet_sciml here would need torch for a non-torch package
    _toplevel = os.path.join(os.path.dirname(__file__), "..", "grepsnet_sciml", "_toplevel.py")
    runpy.run_path(_toplevel)["defer_to_installed"](__name__, __file__)
else:
    from .config import DataConfig, ExperimentConfig, load_config
    from .data import (
        FieldLayout,
        FieldWindows,
        GroupAugmented,
        ParticlePairs,
        field_layout,
        open_dataset,
        particle_reps,
    )
    from .diagnostics import (
        field_elements,
        field_transform,
        particle_transform,
        symmetry_consistency,
    )
    from .evaluate import evaluate, evaluate_fields, evaluate_particles
    from .experiment import (
        build_model,
        load_model,
        model_from_dataset,
        train,
    )
    from .losses import mse, relative_l2
    from .normalize import NormalizedModel, Normalizer
    from .reference import navier_stokes_solver, particle_solver
    from .registry import (
        REGISTRY,
        ModelEntry,
        get_model,
        model_config,
        model_name,
        register_model,
    )
    from .rollout import RolloutResult, rollout, solver_rollout
    from .trainer import TrainConfig, Trainer, TrainingDiverged

    __all__ = [
        "TrainConfig",
        "Trainer",
        "TrainingDiverged",
        "DataConfig",
        "ExperimentConfig",
        "load_config",
        "FieldLayout",
        "FieldWindows",
        "ParticlePairs",
        "open_dataset",
        "field_layout",
        "particle_reps",
        "Normalizer",
        "NormalizedModel",
        "relative_l2",
        "mse",
        "rollout",
        "RolloutResult",
        "solver_rollout",
        "navier_stokes_solver",
        "particle_solver",
        "evaluate",
        "evaluate_fields",
        "evaluate_particles",
        "symmetry_consistency",
        "field_elements",
        "field_transform",
        "particle_transform",
        "train",
        "load_model",
        "model_from_dataset",
        "build_model",
        "GroupAugmented",
        "REGISTRY",
        "ModelEntry",
        "register_model",
        "get_model",
        "model_config",
        "model_name",
    ]
