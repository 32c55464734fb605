"""The dataset contract: attrs -> DatasetSpec -> attrs, errors per bad attribute, the action
of declared elements through Reps.act, and datasets written before it (``negate``)."""

import dataclasses
import json

import numpy as np
import pytest
import scipy.io
import torch

from grepsnet_sciml.datasets import charged_particles, navier_stokes
from grepsnet_sciml.datasets.contract import DatasetSpec, SymmetryElement, group_elements
from grepsnet_sciml.datasets.loaders import load_egnn_npy, load_fno_mat
from grepsnet_sciml.groups import D2, D4, O


@pytest.fixture(scope="module")
def ns_sym():
    return navier_stokes.generate(2, "ns-sym", resolution=16, sim_resolution=16, t_final=0.5,
                                  record_every=0.25, velocity=True, seed=3, progress=False)


def _fno_file(tmp_path):
    u = np.random.default_rng(0).standard_normal((2, 8, 8, 3)).astype(np.float32)
    path = tmp_path / "ns.mat"
    scipy.io.savemat(path, {"a": u[..., 0], "u": u, "t": np.arange(1.0, 4.0)})
    return load_fno_mat(path, forcing="fno", viscosity=1e-3)


def _egnn_files(tmp_path):
    ds = charged_particles.generate(2, preset="egnn", n_steps=300, record_every=100,
                                    progress=False)
    charged_particles.save_egnn_npy(ds, tmp_path, "valid")
    return load_egnn_npy(tmp_path, "valid")


def _round_trip(ds):
    spec = DatasetSpec.from_dataset(ds)
    assert spec.to_attrs() == ds.attrs
    assert DatasetSpec.from_attrs(spec.to_attrs()) == spec
    return spec


def test_generator_outputs_round_trip(ns_sym):
    spec = _round_trip(ns_sym)
    assert (spec.kind, spec.group, spec.translations, spec.exact) == ("field", D4(), False, True)
    assert dict(spec.representations) == {"vorticity": "T0p", "velocity": "T1"}
    assert spec.elements == group_elements(D4(), {n: (0.25, 0.25)
                                                  for n in ("m", "rm", "r2m", "r3m")})
    assert spec.config["forcing"] == "symmetric" and spec.metadata["seed"] == 3
    unforced = _round_trip(navier_stokes.generate(1, resolution=8, forcing=None, t_final=0.25,
                                                  record_every=0.25, progress=False))
    assert unforced.translations is True and all(e.shift == (0, 0) for e in unforced.elements)
    clean = _round_trip(charged_particles.generate(2, preset="clean", n_steps=100,
                                                   progress=False))
    assert (clean.kind, clean.group, clean.elements, clean.exact) == ("particles", O(3), (),
                                                                     True)
    assert clean.translations is True and clean.config["preset"] == "clean"
    splits = charged_particles.egnn_benchmark(seed=1, n_train=2, n_valid=1, n_test=1,
                                              progress=False)
    valid = _round_trip(splits["valid"])
    assert valid.exact is False and valid.config["split"] == "valid"
    assert valid.config["n_samples"] == 1 and valid.config["stream_offset"] == 2


def test_loader_outputs_round_trip(tmp_path):
    fno = _round_trip(_fno_file(tmp_path))
    assert fno.group == D2("diagonal") and fno.exact is False
    assert fno.config["viscosity"] == 1e-3 and fno.metadata["seed"] == -1
    assert [e.shift for e in fno.elements] == [(0, 0), (0.25, 0), (0.5, 0), (0.75, 0)]
    egnn = _round_trip(_egnn_files(tmp_path))
    assert egnn.kind == "particles" and egnn.config["split"] == "valid"


def test_round_trip_through_a_store(tmp_path, ns_sym):
    from grepsnet_sciml.solvers.data import open_dataset

    vorticity = ns_sym.drop_vars(["velocity", "component"])  # the declared velocity is optional
    vorticity.to_zarr(tmp_path / "d.zarr", consolidated=False)
    stored = open_dataset(tmp_path / "d.zarr")
    spec = DatasetSpec.from_dataset(stored)
    assert spec == DatasetSpec.from_dataset(ns_sym) and spec.source.endswith("d.zarr")
    assert spec.to_attrs() == vorticity.attrs  # without the run-time attrs["_source"]


def test_spec_is_a_frozen_value(ns_sym):
    spec = DatasetSpec.from_dataset(ns_sym)
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.kind = "particles"
    with pytest.raises(TypeError):
        spec.representations["vorticity"] = "T0"
    with pytest.raises(TypeError):
        spec.config["viscosity"] = 1.0
    assert hash(spec) == hash(DatasetSpec.from_attrs(ns_sym.attrs, source="elsewhere"))
    assert spec.reps("velocity", 3).dim == 6 and spec.dims("velocity")[-1] == "component"


def _attrs(**changes):
    attrs = {"kind": "field", "group": "D4()", "representations": '{"vorticity": "T0p"}',
             "symmetry": json.dumps({"elements": [
                 {"name": "e", "matrix": [[1, 0], [0, 1]], "shift": [0, 0]},
                 {"name": "m", "matrix": [[1, 0], [0, -1]], "shift": [0.25, 0.25]}]})}
    attrs.update(changes)
    return {k: v for k, v in attrs.items() if v is not None}


@pytest.mark.parametrize("changes, message", [
    ({"kind": None}, r"my\.zarr: missing 'kind' attribute; expected one of \('field', "
                     r"'particles'\)"),
    ({"kind": "mesh"}, r"my\.zarr: attrs\['kind'\] = 'mesh'; expected one of"),
    ({"group": "E(7)"}, r"my\.zarr: attrs\['group'\] = 'E\(7\)': group: unknown group 'E\(7\)'"),
    ({"group": "O(3)"}, r"my\.zarr: attrs\['group'\] = O\(3\); field data needs a planar group"),
    ({"representations": "{vorticity: T0p"},
     r"my\.zarr: attrs\['representations'\] = '\{vorticity: T0p' is not JSON"),
    ({"representations": '["vorticity"]'},
     r"my\.zarr: attrs\['representations'\] = '\[\"vorticity\"\]'; expected a JSON object"),
    ({"representations": '{"vorticity": "T7"}'},
     r"my\.zarr: attrs\['representations'\]\['vorticity'\] = 'T7': spec: unknown"),
    ({"representations": '{"stress": "T2"}'},
     r"my\.zarr: attrs\['representations'\]\['stress'\] = 'T2'; a field variable is one of"),
    ({"symmetry": json.dumps({"elements": [{"name": "s", "matrix": [[2, 0], [0, 1]]}]})},
     r"my\.zarr: attrs\['symmetry'\] element 's': g: matrix \[\[2\.0, 0\.0\], \[0\.0, 1\.0\]\] "
     r"is not an element of D4\(\)"),
    ({"group": "C4()"},  # the declared reflection m is no element of C4
     r"my\.zarr: attrs\['symmetry'\] element 'm': g: matrix .* is not an element of C4\(\)"),
    ({"symmetry": json.dumps({"elements": [{"name": "r", "matrix": [[1, 0], [0, -1]]}]})},
     r"element 'r': the matrix \[\[1\.0, 0\.0\], \[0\.0, -1\.0\]\] is 'm' in D4\(\)"),
    ({"symmetry": json.dumps({"elements": [{"name": "e", "matrix": [[1, 0, 0]]}]})},
     r"attrs\['symmetry'\]\['elements'\]\[0\]: matrix \[\[1, 0, 0\]\] and shift \[0\.0, 0\.0\]; "
     r"expected a \(2, 2\) matrix and 2 shifts"),
    ({"symmetry": json.dumps({"group": "C4()"})},
     r"attrs\['symmetry'\]\['group'\] = 'C4\(\)' disagrees with attrs\['group'\] = 'D4\(\)'"),
    ({"symmetry": json.dumps({"translations": "some"})},
     r"attrs\['symmetry'\]\['translations'\] = 'some'; expected true or false"),
    ({"config": "[1, 2]"}, r"my\.zarr: attrs\['config'\] = '\[1, 2\]'; expected a JSON object"),
])
def test_each_bad_attribute_is_named(changes, message):
    with pytest.raises(ValueError, match=message):
        DatasetSpec.from_attrs(_attrs(**changes), source="my.zarr")


def test_unknown_variables_are_named(ns_sym):
    spec = DatasetSpec.from_dataset(ns_sym)
    with pytest.raises(ValueError, match=r"dataset: variable 'pressure' has no entry in "
                       r"attrs\['representations'\] \(declared: \['velocity', 'vorticity'\]\)"):
        spec.reps("pressure")
    with pytest.raises(ValueError, match="variable 'pressure' has no entry"):
        spec.act(spec.elements[0], "pressure", torch.zeros(16, 16))
    renamed = ns_sym.rename(vorticity="w", velocity="u")
    with pytest.raises(ValueError, match=r"dataset: attrs\['representations'\] names "
                       r"\['velocity', 'vorticity'\], no variable of the dataset "
                       r"\(variables: \['u', 'w'\]\)"):
        DatasetSpec.from_dataset(renamed)
    coarse = ns_sym.isel(x=slice(0, 6), y=slice(0, 6))
    with pytest.raises(ValueError, match=r"attrs\['symmetry'\]: element 'm': shift "
                       r"\[0\.25, 0\.25\] is not a whole number of cells on the 6 x 6 grid"):
        DatasetSpec.from_dataset(coarse)


def _old_act_symmetry(field, element, kind):
    """The removed ``navier_stokes.act_symmetry``, index by index: ``f(g^{-1}(i - s N))``
    times ``-1`` for the vorticity when ``negate``, ``g u(...)`` for the velocity."""
    vector = kind == "velocity"
    n = field.shape[-2] if vector else field.shape[-1]
    g = np.array(element["matrix"], dtype=np.int64)
    g_inv = np.round(np.linalg.inv(g)).astype(np.int64)
    cells = np.round(np.array(element["shift"]) * n).astype(np.int64)
    out = torch.empty_like(field)
    for i in range(n):
        for j in range(n):
            si, sj = (g_inv @ (np.array([i, j]) - cells)) % n
            if vector:
                out[..., i, j, :] = field[..., si, sj, :] @ torch.tensor(g.T, dtype=field.dtype)
            else:
                out[..., i, j] = -field[..., si, sj] if element["negate"] else field[..., si, sj]
    return out


def _legacy_elements(spec):
    return [{**e.to_json(), "negate": e.det < 0} for e in spec.elements]


def test_elements_through_reps_act_reproduce_the_old_action(ns_sym):
    spec = DatasetSpec.from_dataset(ns_sym)
    w = torch.from_numpy(ns_sym.vorticity.values)
    u = torch.from_numpy(ns_sym.velocity.values)
    moved_any = False
    for element, old in zip(spec.elements, _legacy_elements(spec)):
        new_w = spec.act(element, "vorticity", w)
        assert torch.equal(new_w, _old_act_symmetry(w, old, "vorticity")), element.name
        assert torch.equal(spec.act(element, "velocity", u),
                           _old_act_symmetry(u, old, "velocity")), element.name
        moved_any |= not torch.equal(new_w, w)
    assert moved_any


def test_datasets_written_with_negate_stay_readable(ns_sym):
    spec = DatasetSpec.from_dataset(ns_sym)
    old = dict(ns_sym.attrs)
    symmetry = json.loads(old["symmetry"])
    old["symmetry"] = json.dumps({**symmetry, "elements": _legacy_elements(spec),
                                  "translations": "none", "action": "an older description"})
    assert DatasetSpec.from_attrs(old) == spec
    wrong = _legacy_elements(spec)
    wrong[4]["negate"] = False  # m: det -1, so the T0p vorticity must change sign
    old["symmetry"] = json.dumps({**symmetry, "elements": wrong})
    with pytest.raises(ValueError, match=r"x\.zarr: attrs\['symmetry'\]\['elements'\]\[4\]: "
                       r"'negate' = False for element 'm' with det g = -1, but the T0p "
                       r"variables change sign exactly when det g < 0"):
        DatasetSpec.from_attrs(old, source="x.zarr")
    scalar = {**old, "representations": '{"tracer": "T0"}'}  # no T0p variable: negate unused
    assert DatasetSpec.from_attrs(scalar).elements == spec.elements
    particles = charged_particles.generate(1, preset="clean", n_steps=100, progress=False)
    legacy = {**particles.attrs, "symmetry": json.dumps({
        "group": "E(3) x S_n", "point_group": "O(3)", "translations": True,
        "translated_variables": ["position"], "permutation_dim": "particle",
        "exact": True, "note": "exact up to floating-point round-off"})}
    assert DatasetSpec.from_attrs(legacy) == DatasetSpec.from_dataset(particles)


def test_missing_symmetry_declares_the_whole_group_without_shifts():
    spec = DatasetSpec.from_attrs(_attrs(symmetry=None))
    assert spec.elements == group_elements(D4()) and spec.translations is False
    assert [e.det for e in spec.elements] == [1, 1, 1, 1, -1, -1, -1, -1]
    particles = DatasetSpec.from_attrs({"kind": "particles", "group": "O(3)",
                                        "representations": '{"position": "T1"}'})
    assert particles.elements == () and particles.config == {}


def test_element_act_is_reps_act_then_the_shift():
    element = SymmetryElement("r", ((0, -1), (1, 0)), (0.5, 0.0))
    spec = DatasetSpec.from_attrs(_attrs(representations='{"velocity": "T1"}'))
    u = torch.randn(3, 8, 8, 2, dtype=torch.float64)
    expected = torch.roll(spec.reps("velocity").act(element.g, u.movedim(-1, 1), grid=True),
                          (4, 0), (-2, -1)).movedim(1, -1)
    assert torch.equal(spec.act(element, "velocity", u), expected)
    with pytest.raises(ValueError, match=r"element 'r': shift \[0\.5, 0\.0\] is not a whole "
                       r"number of cells on the 7 x 7 grid; expected N divisible by 2"):
        element.cells(7)
