"""The model registry: typed configs mirroring constructors, TOML/CLI/checkpoint round trips,
user registration, training-data augmentation and the example configs."""

import dataclasses
import inspect
import io
import os
from dataclasses import dataclass

import pytest
import torch
from test_solvers_data import toy_field_dataset, toy_particle_dataset

from grepsnet_sciml import Reps
from grepsnet_sciml.cli import main
from grepsnet_sciml.groups import C4, D4, O
from grepsnet_sciml.models import EGNN, GFNO2d, GRepsFNO2d, GRepsNBody
from grepsnet_sciml.models.baselines import FNOBaseline, ParticleMPNN
from grepsnet_sciml.solvers.config import (
    ExperimentConfig,
    config_from_dict,
    config_to_dict,
    load_config,
    set_field,
    with_settings_added_later,
)
from grepsnet_sciml.solvers.data import FieldWindows, GroupAugmented, field_layout
from grepsnet_sciml.solvers.experiment import (
    build_model,
    load_model,
    make_datasets,
    model_from_dataset,
    train,
)
from grepsnet_sciml.solvers.registry import (
    REGISTRY,
    AutoModelConfig,
    EGNNConfig,
    FNOAugConfig,
    GFNOP4Config,
    GRepsNBodyConfig,
    build_core,
    get_model,
    model_config,
    register_model,
)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = os.path.join(ROOT, "examples", "configs")

CONSTRUCTORS = {"fno": FNOBaseline, "fno-aug": FNOBaseline, "grepsfno": GRepsFNO2d,
                "grepsfno-c4": GRepsFNO2d, "gfno-p4": GFNO2d, "gfno-p4m": GFNO2d,
                "gfno-p4m-pseudo": GFNO2d, "mpnn": ParticleMPNN, "grepsnbody": GRepsNBody,
                "egnn": EGNN}
RENAMED = {"hidden_type": "hidden"}  # config field -> constructor argument
WRAPPER_FIELDS = {"forcing_channel",  # build_core's wrapper (ForcingInput), not the model's
                  "energy_budget"}  # build_model's head (EnergyBudget), in the data's units
FIELD_REPS = (Reps("3xT0p", D4()), Reps("T0p", D4()))
PARTICLE_REPS = ((Reps("T1", O(3)), Reps("T1", O(3)), Reps("T0", O(3))), Reps("T1", O(3)))


@pytest.mark.parametrize("name", sorted(CONSTRUCTORS))
def test_each_config_mirrors_its_constructor_with_its_defaults(name):
    entry = REGISTRY[name]
    params = inspect.signature(CONSTRUCTORS[name]).parameters
    fixed = {"rep_in", "rep_out", "group", "in_channels", "out_channels", "vorticity",
             "velocity_output", "predict_velocity"}  # decided by the data or the entry
    fields = {RENAMED.get(f.name, f.name): f.default for f in dataclasses.fields(entry.config)
              if f.name not in WRAPPER_FIELDS}
    assert set(fields) == set(params) - fixed
    for key, default in fields.items():
        assert default == params[key].default, (name, key)
    reps = FIELD_REPS if entry.kind == "field" else PARTICLE_REPS
    small = {f.name: 2 for f in dataclasses.fields(entry.config)
             if f.name in ("modes", "width", "n_layers", "hidden", "vectors", "tensors")}
    model = build_core(model_config(name, small), *reps)
    assert type(model) is CONSTRUCTORS[name]
    assert sum(p.numel() for p in model.parameters()) > 0


def test_entries_fix_group_kind_and_augmentation():
    g = {n: build_core(REGISTRY[n].config(modes=2, width=1, n_layers=1), *FIELD_REPS)
         for n in ("gfno-p4", "gfno-p4m", "gfno-p4m-pseudo", "grepsfno-c4", "grepsfno")}
    assert g["gfno-p4"].rep_in == Reps("3xT0", C4())
    assert g["gfno-p4m"].rep_in == Reps("3xT0", D4())
    assert g["gfno-p4m-pseudo"].rep_in == Reps("3xT0p", D4())
    assert g["grepsfno-c4"].rep_in == Reps("3xT0p", C4()) and g["grepsfno-c4"].hidden.dim == 4
    assert g["grepsfno"].rep_in == Reps("3xT0p", D4()) and g["grepsfno"].hidden.dim == 8
    assert {n for n, e in REGISTRY.items() if e.augment} == {"fno-aug"}
    assert REGISTRY["fno-aug"].augment == "C4"
    hidden = build_core(model_config("grepsfno", {"hidden_type": "2xT0 + 1xR", "modes": 2,
                                                  "n_layers": 1}), *FIELD_REPS).hidden
    assert hidden == Reps("2xT0 + R", D4())


def test_display_names_are_aliases():
    names = {e.display: e.name for e in REGISTRY.values()}
    assert names == {"FNO": "fno", "FNO+aug": "fno-aug", "GRepsFNO": "grepsfno",
                     "GRepsFNO-C4": "grepsfno-c4", "GFNO-p4": "gfno-p4", "GFNO-p4m": "gfno-p4m",
                     "GFNO-p4m-pseudo": "gfno-p4m-pseudo", "MPNN": "mpnn",
                     "GRepsNBody": "grepsnbody", "EGNN": "egnn"}
    cfg = config_from_dict({"model": {"name": "FNO+aug", "width": 6}})
    assert cfg.model == FNOAugConfig(width=6)
    assert config_to_dict(cfg)["model"] == {"name": "fno-aug", "modes": 12, "width": 6,
                                            "n_layers": 4, "projection": 128}
    with pytest.raises(ValueError, match=r"model.name: unknown model 'gfno'; expected 'auto' "
                                         r"or one of \['egnn', "):
        get_model("gfno")


@pytest.mark.parametrize("name", sorted(CONSTRUCTORS))
def test_model_section_round_trips_through_dicts_and_checkpoints(name):
    cfg = config_from_dict({"model": {"name": name, "n_layers": 3}})
    assert cfg.model == dataclasses.replace(REGISTRY[name].config(), n_layers=3)
    stored = config_to_dict(cfg)
    buffer = io.BytesIO()
    torch.save({"experiment": stored}, buffer)
    buffer.seek(0)
    again = torch.load(buffer, weights_only=True)["experiment"]
    assert again == stored and config_from_dict(again) == cfg


def test_unknown_or_bad_model_fields_name_the_model():
    with pytest.raises(ValueError, match=r"model.hidden: unknown setting of model 'gfno-p4'; "
                                         r"expected one of \['modes', 'n_layers', 'width'\]"):
        config_from_dict({"model": {"name": "gfno-p4", "hidden": 8}})
    with pytest.raises(ValueError, match=r"model.width: unknown setting of model 'egnn'; "
                                         r"expected one of \['graph', 'hidden', 'k', "):
        config_from_dict({"model": {"name": "egnn", "width": 8}})
    with pytest.raises(ValueError, match="model.width: expected int, got '8'"):
        config_from_dict({"model": {"name": "grepsfno", "width": "8"}})
    with pytest.raises(ValueError, match=r"model.channels: GRepsFNOConfig expects one of "
                                         r"\['regular', 'tensor', 'mixed'\], got 'dense'"):
        config_from_dict({"model": {"name": "grepsfno", "channels": "dense"}})
    with pytest.raises(ValueError, match="model.radius: GRepsNBodyConfig expects a positive "
                                         "number, got -1.0"):
        GRepsNBodyConfig(radius=-1.0)
    with pytest.raises(ValueError, match=r"model.vectors: unknown setting of model 'auto' "
                                         r"\(fno for fields, mpnn for particles\)"):
        config_from_dict({"model": {"vectors": 2}})


def test_auto_keeps_settings_until_the_data_kind_is_known():
    cfg = config_from_dict({"model": {"hidden": 16, "n_layers": 2}})
    assert cfg.model == AutoModelConfig((("hidden", 16), ("n_layers", 2)))
    assert config_to_dict(cfg)["model"] == {"name": "auto", "hidden": 16, "n_layers": 2}
    mpnn = model_from_dataset(toy_particle_dataset(), hidden=8, n_layers=1)
    assert mpnn.hparams == {"hidden": 8, "n_layers": 1, "predict_velocity": True}
    with pytest.raises(ValueError, match="model.hidden: model 'auto' is 'fno' for field data, "
                                         "which has no setting 'hidden'"):
        model_from_dataset(toy_field_dataset(), hidden=8)


def test_set_field_sets_the_chosen_model_fields():
    cfg = set_field(ExperimentConfig(), "model.name", "gfno-p4")
    cfg = set_field(cfg, "model.width", "12")
    assert cfg.model == GFNOP4Config(width=12)
    cfg = set_field(set_field(cfg, "model.name", "egnn"), "model.radius", "0.5")
    assert cfg.model == EGNNConfig(radius=0.5)  # a new name starts from its defaults
    assert set_field(cfg, "model.radius", "none").model == EGNNConfig()
    with pytest.raises(ValueError, match=r"model.width: unknown setting of model 'egnn'; "
                                         r"expected one of \['graph', "):
        set_field(cfg, "model.width", "4")
    with pytest.raises(ValueError, match="model.hidden: expected int, got 'wide'"):
        set_field(cfg, "model.hidden", "wide")


def test_cli_help_lists_each_model_and_its_fields(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    out = capsys.readouterr().out
    for entry in REGISTRY.values():
        assert f"{entry.name} ({entry.display}, {entry.kind}): {entry.description}" in out
    assert "width=10, modes=12, n_layers=4" in out and "--model.hidden_type" in out
    assert "hidden=64, vectors=8, tensors=4, n_layers=2" in out


@dataclass(frozen=True)
class _TinyConfig:
    scale: float = 2.0


class _Scale(torch.nn.Module):
    def __init__(self, rep_in, rep_out, scale):
        super().__init__()
        self.rep_in, self.rep_out = rep_in, rep_out
        self.weight = torch.nn.Parameter(torch.tensor(scale))

    def forward(self, x):
        return self.weight * x[:, -1:]


@pytest.fixture
def tiny_model():
    entry = register_model("tiny-scale", _TinyConfig,
                           lambda cfg, rep_in, rep_out: _Scale(rep_in, rep_out, cfg.scale),
                           "field", "last frame times a learnt scale", display="TinyScale")
    yield entry
    del REGISTRY["tiny-scale"]


def test_register_model_for_users(tiny_model, tmp_path):
    cfg = config_from_dict({"data": {"t_in": 2}, "model": {"name": "TinyScale", "scale": 3}})
    assert cfg.model == _TinyConfig(3.0)
    assert config_to_dict(cfg)["model"] == {"name": "tiny-scale", "scale": 3.0}
    model = model_from_dataset(toy_field_dataset(n_time=3), "tiny-scale", t_in=2, scale=0.5)
    assert model.weight.item() == 0.5 and model.rep_in == Reps("2xT0p", D4())
    with pytest.raises(ValueError, match="'tiny-scale' is a field model"):
        model_from_dataset(toy_particle_dataset(), "tiny-scale")

    @dataclass
    class Loose:
        scale: float = 1.0

    with pytest.raises(ValueError, match="config_cls: expected a frozen dataclass"):
        register_model("loose", Loose, _Scale, "field")
    with pytest.raises(ValueError, match="_TinyConfig is already the config of 'tiny-scale'"):
        register_model("tiny-other", _TinyConfig, _Scale, "field")
    with pytest.raises(ValueError, match="kind: expected 'field' or 'particles', got 'graph'"):
        register_model("tiny-graph", FNOAugConfig, _Scale, "graph")
    with pytest.raises(ValueError, match="name: expected a non-empty lower-case name"):
        register_model("Tiny", _TinyConfig, _Scale, "field")


def _det(group, a):
    return float(torch.linalg.det(group.elements()[a]))


def test_augmented_item_is_the_group_action_with_the_pseudo_scalar_sign():
    ds = toy_field_dataset(n_samples=2, n_time=4, n=8)
    base = FieldWindows(ds, 2, 1)
    group = D4()
    aug = GroupAugmented(base, group, torch.Generator().manual_seed(7))
    draws = torch.Generator().manual_seed(7)
    signs = set()
    for i in range(len(base)):
        a = int(torch.randint(group.order, (), generator=draws))
        x, y = aug[i]
        x0, y0 = base[i]
        sign = _det(group, a)  # vorticity is a pseudo-scalar: det g = -1 flips it
        signs.add(sign)
        torch.testing.assert_close(x, sign * group.act_grid(a, x0), rtol=0, atol=0)
        torch.testing.assert_close(y, sign * group.act_grid(a, y0), rtol=0, atol=0)
    assert signs == {1.0, -1.0}  # both rotations and reflections were drawn
    assert aug.rep_in == Reps("2xT0p", D4()) and len(aug) == len(base)


def test_fno_aug_trains_on_c4_augmented_data(tmp_path):
    path = tmp_path / "heat.zarr"
    toy_field_dataset(n_samples=4, n_time=6, n=12).to_zarr(path, consolidated=False)
    values = {"data": {"train": str(path), "t_in": 2, "valid_rollout_steps": 2},
              "model": {"name": "fno-aug", "modes": 3, "width": 2, "n_layers": 1},
              "train": {"out_dir": str(tmp_path / "run"), "epochs": 1, "batch_size": 4,
                        "progress": False, "device": "cpu"}}
    cfg = config_from_dict(values)
    kind, train_set, _, _ = make_datasets(cfg)
    assert isinstance(train_set, GroupAugmented) and train_set.group == C4()
    assert isinstance(build_model(cfg, kind, train_set).core, FNOBaseline)
    train(cfg)
    loaded = load_model(tmp_path / "run" / "last.pt", name="FNO+aug")
    assert loaded.config.model == FNOAugConfig(modes=3, width=2, n_layers=1)
    with pytest.raises(ValueError, match=r"data.augment: 'D4' conflicts with model 'fno-aug', "
                                         r"which trains on C4-augmented data; expected '' or "
                                         r"'C4'"):
        make_datasets(config_from_dict({**values, "data": {**values["data"],
                                                           "augment": "D4"}}))
    path_c4 = tmp_path / "c4.zarr"
    toy_field_dataset(n_samples=4, n_time=6, n=12).assign_attrs(group="C4()").to_zarr(
        path_c4, consolidated=False)
    with pytest.raises(ValueError, match=r"D4\(\), which is not a subgroup of the data's "
                                         r"group C4\(\)"):
        make_datasets(config_from_dict({"data": {"train": str(path_c4), "t_in": 2,
                                                 "augment": "D4"}}))
    with pytest.raises(ValueError, match="data.augment: group: unknown group 'Z7'"):
        config_from_dict({"data": {"augment": "Z7"}})


def test_auto_run_resumes_and_stores_the_model_it_built(tmp_path):
    path = tmp_path / "p.zarr"
    toy_particle_dataset(n_samples=6, n_time=10).to_zarr(path, consolidated=False)
    values = {"data": {"train": str(path), "input_frames": [0, 1], "delta": 3,
                       "valid_rollout_steps": 2},
              "model": {"hidden": 8, "n_layers": 1},
              "train": {"out_dir": str(tmp_path / "run"), "epochs": 1, "batch_size": 4,
                        "loss": "mse", "progress": False, "device": "cpu"}}
    train(config_from_dict(values))
    assert load_model(tmp_path / "run" / "last.pt").config.model == model_config(
        "mpnn", {"hidden": 8, "n_layers": 1})
    values["train"]["epochs"] = 2
    _, history = train(config_from_dict(values), resume=True)
    assert [r["epoch"] for r in history] == [2]
    values["model"] = {"name": "mpnn", "hidden": 16, "n_layers": 1}
    with pytest.raises(ValueError, match="model.hidden: stored 8, requested 16"):
        train(config_from_dict(values), resume=True)
    values["model"] = {"name": "egnn", "hidden": 8, "n_layers": 1}
    with pytest.raises(ValueError, match=r"model.name: stored 'mpnn', requested 'egnn'.*"
                                         r"model.graph: stored None, requested 'full'"):
        train(config_from_dict(values), resume=True)


@pytest.mark.parametrize("file, name, fields", [
    ("ns_sym_grepsfno.toml", "grepsfno", {"width": 6, "modes": 12, "n_layers": 3}),
    ("ns_sym_gfno_p4.toml", "gfno-p4", {"width": 10, "modes": 12, "n_layers": 4}),
    ("nbody_grepsnbody.toml", "grepsnbody", {"hidden": 64, "vectors": 8, "n_layers": 2,
                                             "radial": "inverse", "conserve_energy": True,
                                             "energy_softening": 0.1}),
])
def test_example_configs_load_and_build(file, name, fields):
    cfg = load_config(os.path.join(CONFIGS, file))
    assert config_to_dict(cfg)["model"]["name"] == name
    assert {k: getattr(cfg.model, k) for k in fields} == fields
    entry = REGISTRY[name]
    if entry.kind == "field":
        assert cfg.data.variables == ["vorticity"] and cfg.data.t_in == 10
        reps = (Reps("10xT0p", D4()), Reps("T0p", D4()))
    else:
        assert cfg.data.predict_velocity and cfg.data.delta == 10
        reps = (PARTICLE_REPS[0], (Reps("T1", O(3)),) * 2)
    model = build_model(cfg, entry.kind, rep_in=reps[0], rep_out=reps[1],
                        layout=_vorticity_layout() if entry.kind == "field" else None)
    assert type(model.core) is CONSTRUCTORS[name]


def _vorticity_layout():
    return field_layout(toy_field_dataset(n_samples=1, n_time=2, n=8), ["vorticity"])


def test_checkpoints_written_before_mlp_expansion_rebuild_their_model(tmp_path):
    """A stored experiment without ``mlp_expansion`` (older checkpoints) is read with 1.0, the
    block MLP it was trained with; one that has it keeps it; other models are untouched."""
    old = {"data": {"train": "d.zarr"}, "model": {"name": "grepsfno", "width": 3}}
    upgraded = with_settings_added_later(old)
    assert upgraded["model"]["mlp_expansion"] == 1.0 and upgraded["data"]["normalize"] is True
    assert "mlp_expansion" not in old["model"]  # the stored dict itself is not changed
    core = build_core(config_from_dict(upgraded).model, Reps("2xT0p", D4()), Reps("T0p", D4()))
    assert core.blocks[0].mlp[1].rep_in == Reps("3xR", D4())
    new = {"model": {"name": "grepsfno", "width": 3, "mlp_expansion": 0.5}}
    assert with_settings_added_later(new)["model"]["mlp_expansion"] == 0.5
    fno = {"model": {"name": "fno", "width": 8}}
    assert with_settings_added_later(fno)["model"] == fno["model"]
    assert model_config("grepsfno", {}).mlp_expansion == pytest.approx(2 / 3)
