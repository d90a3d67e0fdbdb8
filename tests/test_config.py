"""The schema documents every key, fills defaults, and rejects impossible values by name."""

import copy

import pytest
import yaml
from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

from xrdbench.config import check_config
from xrdbench.errors import ConfigError


@pytest.fixture(scope="module")
def schema_path(repo_root):
    return str(repo_root / "workflow" / "schemas" / "config.schema.yaml")


@pytest.fixture
def default_config(repo_root, schema_path):
    config = yaml.safe_load((repo_root / "config.yaml").read_text())
    validate(config, schema_path)
    return config


def _walk(schema, path=""):
    for key, sub in schema.get("properties", {}).items():
        yield f"{path}{key}", sub
        yield from _walk(sub, f"{path}{key}.")


def test_every_key_is_documented_and_has_a_default(schema_path):
    schema = yaml.safe_load(open(schema_path))
    keys = [(key, sub) for key, sub in _walk(schema) if not key.startswith("datasets.")]
    for key, sub in _walk(schema["$defs"]["dataset"]):
        assert sub.get("description"), f"datasets.<name>.{key} has no description"
    for key, sub in keys:
        leaf = "properties" not in sub
        parent_of_required = key.endswith("fractions")
        if leaf and not key.startswith("splits.fractions."):
            assert sub.get("description"), f"{key} has no description"
            assert "default" in sub, f"{key} has no default"
        elif parent_of_required:
            assert "default" in sub


def test_schema_defaults_are_the_published_values(schema_path):
    config = {}
    validate(config, schema_path)
    assert config["labels"]["symprec"] == 0.1
    assert config["sources"]["oqmd"]["enabled"] is False
    assert config["sources"]["oqmd"]["max_hull_distance_ev"] == 0.1
    assert config["splits"]["balanced_per_group"] == 10
    assert config["simulate"]["wavelength_angstrom"] == 1.54184
    assert config["augment"]["caglioti_dw_range"] == [0.0018, 0.002]
    assert config["datasets"]["multiphase"]["kind"] == "mixture"
    assert config["datasets"]["mof_balanced"]["splits"]["test"]["balanced"] is True
    assert config["single_phase"]["preset"] == "paper"
    assert config["single_phase"]["runs"]["xrdecoupler"]["superclasses"] == [
        "crystal_system", "bravais_lattice", "point_group"]
    check_config(config)


@pytest.mark.parametrize("change, key", [
    ({"train_dataset": "nowhere"}, "single_phase.train_dataset"),
    ({"train_dataset": "mof_balanced"}, "single_phase.train_dataset"),
    ({"evaluate": {"mof": ["holdout"]}}, "single_phase.evaluate.mof"),
    ({"evaluate": {"nowhere": ["test"]}}, "single_phase.evaluate.nowhere"),
])
def test_single_phase_benchmark_needs_its_datasets(default_config, change, key):
    config = copy.deepcopy(default_config)
    config["single_phase"].update(change)
    with pytest.raises(ConfigError, match=key):
        check_config(config)


def test_evaluating_on_train_is_refused_by_the_schema(repo_root, schema_path):
    config = yaml.safe_load((repo_root / "config.yaml").read_text())
    config["single_phase"]["evaluate"] = {"mof": ["train"]}
    with pytest.raises(WorkflowError):
        validate(config, schema_path)


def test_embedded_default_config_is_valid(default_config):
    check_config(default_config)
    assert default_config["datasets"]["multiphase"]["source"] == "synthetic"


@pytest.mark.parametrize("section, key, value", [
    ("labels", "occupancy", "maybe"),
    ("labels", "symprec", 0),
    ("splits", "seed", -1),
])
def test_impossible_values_name_the_key(repo_root, schema_path, section, key, value):
    config = yaml.safe_load((repo_root / "config.yaml").read_text())
    config.setdefault(section, {})[key] = value
    with pytest.raises(WorkflowError, match=key):
        validate(config, schema_path)


def test_fractions_must_sum_to_one(default_config):
    config = copy.deepcopy(default_config)
    config["splits"]["fractions"] = {"train": 0.5, "val": 0.1, "test": 0.1}
    with pytest.raises(ConfigError, match="splits.fractions"):
        check_config(config)


def test_local_source_needs_a_directory(default_config, tmp_path):
    config = copy.deepcopy(default_config)
    config["sources"]["local"] = {"enabled": True, "path": str(tmp_path / "missing"), "pattern": "*.cif"}
    with pytest.raises(ConfigError, match="sources.local.path"):
        check_config(config)


def test_augment_schema_defaults_are_the_package_defaults(default_config):
    from xrdbench.augment.sampling import DEFAULT_OPTIONS

    assert default_config["augment"] == DEFAULT_OPTIONS


def test_grid_schema_defaults_are_the_named_grids(schema_path):
    from xrdbench.simulate.grids import NAMED_GRIDS

    config = {}
    validate(config, schema_path)
    for name, grid in NAMED_GRIDS.items():
        spec = config["grids"][name]
        assert (spec["two_theta_min_deg"], spec["two_theta_max_deg"], spec["n_bins"]) == \
            (grid.two_theta_min_deg, grid.two_theta_max_deg, grid.n_bins)


def test_model_train_overlays_train_for_that_model_only():
    from xrdbench.config import section_train_overrides

    section = {"train": {"epochs": 30, "lr": 0.001, "batch_rows": 32},
               "model_train": {"xrdecoupler": {"lr": 0.01, "batch_rows": 64}}}
    assert section_train_overrides(section, {"model": "xrdecoupler"}) == {"epochs": 30, "lr": 0.01, "batch_rows": 64}
    assert section_train_overrides(section, {"model": "cnn"}) == section["train"]
    assert section_train_overrides({"train": {"steps": 5}}, {"model": "multilabel_cnn"}) == {"steps": 5}
