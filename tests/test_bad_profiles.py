"""Hardware profiles: every field typed and range-checked, errors naming the
file and the field; the mesh is bounded (no multi-gigabyte placement from a
typo); non-finite energies never reach a report."""
import json

import pytest

from transforms.lowering.hardware import (MAX_CORES, MAX_MESH_SIDE, ProfileError,
                                          load_profile, profile_from_dict)

BASE = {"name": "mine", "mesh": [2, 2], "max_neurons": 16, "max_axons_in": 32,
        "weight_bits": [4, 8]}


@pytest.mark.parametrize("change, match", [
    ({"energy_pj": {"synaptic_op": float("nan")}}, r"energy_pj.synaptic_op must be a finite"),
    ({"energy_pj": {"synaptic_op": float("inf")}}, r"energy_pj.synaptic_op must be a finite"),
    ({"energy_pj": {"synaptic_op": -1.0}}, r"energy_pj.synaptic_op must be a finite"),
    ({"energy_pj": {"synaptic_op": True}}, r"energy_pj.synaptic_op"),
    ({"energy_pj": "lots"}, r"'energy_pj' must be an object .* got str 'lots'"),
    ({"sources": ["datasheet"]}, r"'sources' must be an object"),
    ({"mesh": [2000, 2000]}, rf"exceeds {MAX_MESH_SIDE} routers a side"),
    ({"mesh": [100000, 100000]}, rf"exceeds {MAX_MESH_SIDE} routers a side"),
    ({"mesh": [256, 256], "cores_per_router": 8}, rf"over the bound of {MAX_CORES}"),
    ({"mesh": [True, 2]}, r"'mesh' must be \[rows, cols\]"),
    ({"max_neurons": 1.5}, r"'max_neurons' must be a positive integer"),
    ({"name": 7}, r"'name' must be a non-empty string"),
])
def test_bad_fields_named(change, match):
    with pytest.raises(ProfileError, match=match):
        profile_from_dict({**BASE, **change}, where="mine.json")


def test_file_errors_name_the_file(tmp_path):
    path = tmp_path / "p.json"
    path.write_text('{"name": "p", "mesh": [1, 1], "max_neurons": 4, "max_axons_in": 4, '
                    '"weight_bits": [8, 8], "energy_pj": {"synaptic_op": NaN}}')
    with pytest.raises(ProfileError, match=rf"{path}: NaN is not a number a profile may hold"):
        load_profile(str(path))
    path.write_bytes(b"\xff\xfe garbage")
    with pytest.raises(ProfileError, match=rf"{path}: not valid JSON"):
        load_profile(str(path))
    folder = tmp_path / "dir.json"
    folder.mkdir()
    with pytest.raises(ProfileError, match="not a file"):
        load_profile(str(folder))
    path.write_text(json.dumps({**BASE, "energy_pj": {"synaptic_op": 2.5}}))
    assert load_profile(str(path)).energy_pj == {"synaptic_op": 2.5}
