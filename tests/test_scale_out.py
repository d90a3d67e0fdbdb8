"""Scale-out: the SLURM workflow profile, the paper and medium presets, and `xrdbench regenerate`.

The profile's resources are checked on Snakemake's own dry-run output (each job prints
`resources: ...` and its shell command). With snakemake-executor-plugin-slurm installed
(the `slurm` extra) the profile is used as it is; without it Snakemake cannot load
`executor: slurm`, so the same profile file is used with `--executor local` given on the
command line (which overrides the profile's executor and nothing else): resources,
threads and job counts are resolved by Snakemake itself, before any executor sees them.
"""

from __future__ import annotations

import copy
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
PROFILE = REPO / "workflow/profiles/slurm/config.yaml"
PRESETS = {name: REPO / f"workflow/presets/{name}.yaml" for name in ("paper", "medium")}
SCHEMA = REPO / "workflow/schemas/config.schema.yaml"
PLUGIN = "snakemake_executor_plugin_slurm"
PLUGIN_INSTALLED = importlib.util.find_spec(PLUGIN) is not None

# The rules call the xrdbench CLI installed beside this interpreter; a dead proxy makes any
# network access at parse time (requests, urllib) fail, so a green dry run proves there is none.
DEAD = "http://127.0.0.1:9"
ENV = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
           HTTP_PROXY=DEAD, HTTPS_PROXY=DEAD, http_proxy=DEAD, https_proxy=DEAD, NO_PROXY="", no_proxy="")

TINY = {
    "threads": 2,
    "progress": False,
    "sources": {"coremof": {"max_structures": 6}, "synthetic": {"per_space_group": 1, "space_groups": [1, 2, 14, 225]}},
    "splits": {"fractions": {"train": 0.6, "val": 0.2, "test": 0.2}, "balanced_per_group": 1},
    "grids": {"xrdecoupler": {"two_theta_min_deg": 5.0, "two_theta_max_deg": 90.0, "n_bins": 850}},
    "single_phase": {"preset": "demo", "threads": 1, "train": {"epochs": 1}},
}


def workflow_rules() -> set[str]:
    rules = set()
    for path in (REPO / "workflow/rules").glob("*.smk"):
        rules |= set(re.findall(r"^rule (\w+):", path.read_text(), flags=re.M))
    return rules


def schema_sections() -> set[str]:
    return set(yaml.safe_load(SCHEMA.read_text())["properties"])


def load_preset(name: str) -> dict:
    """The preset as written, less its multi_phase block while the schema has no such section yet."""
    preset = yaml.safe_load(PRESETS[name].read_text())
    if "multi_phase" not in schema_sections():
        preset.pop("multi_phase", None)
    return preset


def make_workdir(root: Path, config: dict | None = None) -> Path:
    """A copy of the workflow (Snakefile, rules, schema, profiles) with `config` or the repository's config.yaml."""
    root.mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO / "Snakefile", root / "Snakefile")
    shutil.copytree(REPO / "workflow", root / "workflow")
    shutil.copytree(REPO / "envs", root / "envs")
    (root / "profiles").symlink_to("workflow/profiles")
    if config is None:
        shutil.copy(REPO / "config.yaml", root / "config.yaml")
    else:
        (root / "config.yaml").write_text(yaml.safe_dump(config))
    for name in PRESETS:  # presets as the tests use them (see load_preset)
        (root / f"workflow/presets/{name}.yaml").write_text(yaml.safe_dump(load_preset(name)))
    return root


def snakemake(workdir: Path, *args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "snakemake", "--directory", str(workdir),
               "--snakefile", str(workdir / "Snakefile"), *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=ENV, cwd=workdir)


def dry_run_jobs(output: str) -> list[dict]:
    """Each job of a `snakemake -n --printshellcmds` listing: rule, resources (dict), shell command."""
    jobs = []
    for block in re.split(r"\n(?=(?:local)?rule \w+:\n)", output)[1:]:
        rule = re.match(r"(?:local)?rule (\w+):", block).group(1)
        match = re.search(r"^\s+resources: (.*)$", block, flags=re.M)
        resources = dict(item.split("=", 1) for item in match.group(1).split(", ")) if match else {}
        shell = re.search(r"^Shell command: (.*)$", block, flags=re.M)
        jobs.append({"rule": rule, "resources": resources, "shell": shell.group(1) if shell else ""})
    return jobs


def job_counts(output: str) -> dict[str, int]:
    table = output[output.index("Job stats:"):]
    return {rule: int(count) for rule, count in re.findall(r"^(\w+)\s+(\d+)$", table, flags=re.M) if rule != "total"}


# ------------------------------------------------------------------------------------------------ the profile

def test_profile_names_every_rule_with_the_plugins_resources():
    profile = yaml.safe_load(PROFILE.read_text())
    assert profile["executor"] == "slurm"
    assert profile["jobs"] >= 200
    assert profile["default-resources"]["runtime"] > 0 and profile["default-resources"]["mem_mb"] > 0
    rules = workflow_rules() - {"all"}
    assert {"simulate_shard", "build_dataset", "train_single_phase"} <= rules
    missing = rules - set(profile["set-resources"])
    assert not missing, f"rules without set-resources in the SLURM profile: {sorted(missing)}"
    assert not rules - set(profile["set-threads"]), "every rule needs set-threads"
    for rule, resources in profile["set-resources"].items():
        assert isinstance(resources["runtime"], int) and resources["runtime"] > 0, rule  # minutes: sbatch -t
        assert isinstance(resources["mem_mb"], int) and resources["mem_mb"] >= 1000, rule  # sbatch --mem
        # gpu is the plugin's resource (sbatch --gpus=N): one for training, none elsewhere
        assert resources.get("gpu", 0) == (1 if rule.startswith("train_") else 0), rule
        assert not set(resources) - {"runtime", "mem_mb", "gpu", "gpu_model", "slurm_partition", "slurm_account",
                                     "constraint", "qos", "slurm_extra", "cpus_per_task"}, rule
    for rule in ("train_single_phase", "train_multi_phase"):
        assert profile["set-resources"][rule]["gpu"] == 1


def test_slurm_extra_pins_a_plugin_version():
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    (requirement,) = extras["slurm"]
    name, version = requirement.split("==")
    assert name == "snakemake-executor-plugin-slurm" and re.fullmatch(r"\d+\.\d+\.\d+", version)
    if PLUGIN_INSTALLED:
        from importlib.metadata import version as installed

        assert installed("snakemake-executor-plugin-slurm") == version


@pytest.fixture(scope="module")
def tiny_workdir(tmp_path_factory):
    return make_workdir(tmp_path_factory.mktemp("scale_out"), TINY)


def test_profile_resources_and_threads_reach_every_job(tiny_workdir):
    profile = yaml.safe_load(PROFILE.read_text())
    # --cores 64: a local dry run caps threads at --cores; SLURM does not.
    args = ["-n", "--printshellcmds", "--cores", "64", "--workflow-profile", str(PROFILE.parent), "all"]
    if not PLUGIN_INSTALLED:
        args += ["--executor", "local"]  # the profile as it is, but an executor Snakemake can load
    result = snakemake(tiny_workdir, *args)
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    out = result.stdout + result.stderr
    assert "Using workflow specific profile" in out and "workflow/profiles/slurm" in out
    jobs = [job for job in dry_run_jobs(out) if job["rule"] != "all"]
    seen = {job["rule"] for job in jobs}
    assert {"simulate_shard", "build_bank", "build_dataset", "train_single_phase", "evaluate_single_phase"} <= seen
    assert {"train_multi_phase", "evaluate_multi_phase"} & workflow_rules() <= seen
    for job in jobs:
        wanted = profile["set-resources"][job["rule"]]
        assert job["resources"]["runtime"] == str(wanted["runtime"]), job
        assert job["resources"]["mem_mb"] == str(wanted["mem_mb"]), job
        if "gpu" in wanted:
            assert job["resources"]["gpu"] == str(wanted["gpu"]), job
        else:
            assert "gpu" not in job["resources"], job
        if "--threads" in job["shell"]:
            assert f"--threads {profile['set-threads'][job['rule']]} " in job["shell"], job
    assert sum(job["rule"] == "train_single_phase" for job in jobs) == len(
        yaml.safe_load(SCHEMA.read_text())["properties"]["single_phase"]["properties"]["runs"]["default"])


# ------------------------------------------------------------------------------------------------ the presets

def resolved(name: str, workdir: Path) -> dict:
    """The preset merged over config.yaml as Snakemake merges --configfile, validated, defaults filled."""
    from xrdbench.config import check_config
    from xrdbench.regenerate import resolved_config

    config = resolved_config(workdir, [workdir / f"workflow/presets/{name}.yaml"])
    check_config(config)
    return config


@pytest.fixture(scope="module")
def repo_config_workdir(tmp_path_factory):
    return make_workdir(tmp_path_factory.mktemp("presets"))


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_preset_validates_alone_and_over_config_yaml(name, repo_config_workdir):
    from snakemake.utils import validate

    from xrdbench.config import check_config

    alone = copy.deepcopy(load_preset(name))
    validate(alone, str(SCHEMA))
    check_config(alone)
    resolved(name, repo_config_workdir)
    text = PRESETS[name].read_text()
    assert text.startswith("#") and f"--configfile workflow/presets/{name}.yaml" in text
    assert "Expected resources" in text


def _leaves(tree: dict, prefix=()):
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            yield from _leaves(value, prefix + (key,))
        else:
            yield prefix + (key,)


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_preset_overrides_every_scaled_down_key_of_config_yaml(name):
    """Snakemake merges --configfile over config.yaml, so a preset must set every key config.yaml scales down."""
    preset = yaml.safe_load(PRESETS[name].read_text())
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    uncovered = []
    for path in _leaves(config):
        node = preset
        for key in path:
            if not isinstance(node, dict) or key not in node:
                uncovered.append(".".join(path))
                break
            node = node[key]
            if not isinstance(node, dict):  # the preset replaces this whole subtree
                break
    assert not uncovered, f"{name}.yaml leaves config.yaml's values in place for: {uncovered}"


def test_paper_preset_is_the_published_setup(repo_config_workdir):
    config = resolved("paper", repo_config_workdir)
    schema = yaml.safe_load(SCHEMA.read_text())["properties"]
    assert config["grids"]["xrdecoupler"] == schema["grids"]["properties"]["xrdecoupler"]["default"]
    assert config["grids"]["xrdecoupler"]["n_bins"] == 8500
    assert config["grids"]["multiphase"] == schema["grids"]["properties"]["multiphase"]["default"]
    assert config["sources"]["coremof"]["max_structures"] is None
    assert config["sources"]["synthetic"]["per_space_group"] == 35
    assert config["sources"]["oqmd"]["enabled"] is True
    assert config["sources"]["local"]["enabled"] is False and "sources.local.path" in PRESETS["paper"].read_text()
    assert config["splits"]["balanced_per_group"] == 10
    assert config["labels"]["max_sites"] == 5000
    assert config["simulate"]["shards"] >= 256
    multiphase = config["datasets"]["multiphase"]
    published = schema["datasets"]["properties"]["multiphase"]["properties"]["splits"]["default"]
    assert {split: {key: spec[key] for key in ("materials", "n_samples")} for split, spec in multiphase["splits"].items()} \
        == published
    assert multiphase["source"] == "oqmd"
    assert config["single_phase"]["preset"] == "paper"
    # every trainer option left to each model's published preset, but the epochs (null = the preset's)
    assert {key: value for key, value in config["single_phase"]["train"].items() if value is not None} \
        == {"epochs": 200, "num_workers": 0}
    assert all(value is None for options in config["single_phase"]["model_train"].values() for value in options.values())
    assert set(config["single_phase"]["runs"]) == set(schema["single_phase"]["properties"]["runs"]["default"])
    written = yaml.safe_load(PRESETS["paper"].read_text())["multi_phase"]
    assert written["preset"] == "paper"
    assert {key: written["train"][key] for key in ("steps", "batch_rows")} == {"steps": 1_000_000, "batch_rows": 256}
    if "multi_phase" in schema:
        assert config["multi_phase"]["preset"] == "paper"
        assert config["multi_phase"]["train"]["steps"] == 1_000_000


def test_medium_preset_sits_between_default_and_paper(repo_config_workdir):
    from xrdbench.regenerate import resolved_config

    default, medium, paper = (resolved_config(repo_config_workdir, []), resolved("medium", repo_config_workdir),
                              resolved("paper", repo_config_workdir))
    assert default["sources"]["coremof"]["max_structures"] < 12_000 and medium["sources"]["coremof"]["max_structures"] is None
    assert medium["single_phase"]["train"]["epochs"] > default["single_phase"]["train"]["epochs"]
    assert medium["multi_phase"]["train"]["steps"] > default["multi_phase"]["train"]["steps"]
    assert default["grids"]["xrdecoupler"]["n_bins"] <= medium["grids"]["xrdecoupler"]["n_bins"] <= 8500
    assert medium["datasets"]["multiphase"]["splits"]["train"]["n_samples"] == 100_000
    assert medium["sources"]["oqmd"]["enabled"] is False
    assert default["simulate"]["shards"] <= medium["simulate"]["shards"] <= paper["simulate"]["shards"]
    assert medium["multi_phase"]["train"]["steps"] < paper["multi_phase"]["train"]["steps"]


def expected_jobs(config: dict) -> dict[str, int]:
    sources = [name for name, source in config["sources"].items() if source["enabled"]]
    banks = sum(len(config["simulate"]["banks"][source]) for source in sources)
    splits = [(name, split) for name, dataset in config["datasets"].items()
              if dataset["source"] in sources for split in dataset["splits"]]
    built = {name for name, _ in splits}
    counts = {"fetch_structures": len(sources), "label_structures": len(sources), "split_materials": len(sources),
              "simulate_shard": banks * config["simulate"]["shards"], "build_bank": banks, "build_dataset": len(splits)}
    for benchmark in ("single_phase", "multi_phase"):
        if benchmark not in config:  # multi_phase: until the schema has the section
            continue
        runs = config[benchmark]["runs"]
        counts[f"train_{benchmark}"] = len(runs)
        counts[f"evaluate_{benchmark}"] = len(runs) * sum(
            len(s) for name, s in config[benchmark]["evaluate"].items() if name in built)
    return counts


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_preset_dry_run_lists_every_job_without_the_network(name, repo_config_workdir):
    config = resolved(name, repo_config_workdir)
    # targets before --configfile: it takes several files and would swallow `all`
    result = snakemake(repo_config_workdir, "-n", "--cores", "32", "all",
                       "--configfile", f"workflow/presets/{name}.yaml", timeout=300)
    out = result.stdout + result.stderr
    assert result.returncode == 0, out[-4000:]
    counts = job_counts(out)
    for rule, count in expected_jobs(config).items():
        assert counts.get(rule, 0) == count, (rule, counts)
    assert counts["train_single_phase"] == 10 and counts["evaluate_single_phase"] == 40
    if "train_multi_phase" in workflow_rules() and "multi_phase" in config:
        assert counts["train_multi_phase"] == len(config["multi_phase"]["runs"]) >= 1, counts
        assert counts["evaluate_multi_phase"] >= 2 * counts["train_multi_phase"], counts
    if name == "paper":
        # OQMD is on: it is fetched by a job at execution time, never while the workflow is parsed
        assert "fetch_structures" in counts and "wildcards: source=oqmd" in out
        assert counts["simulate_shard"] >= 4 * 256


# ------------------------------------------------------------------------------------------------ regenerate

REGEN = {
    "threads": 2,
    "progress": False,
    "sources": {"coremof": {"enabled": False},
                "synthetic": {"per_space_group": 1, "space_groups": [1, 2, 14, 62, 139, 166, 194, 225]}},
    "splits": {"fractions": {"train": 0.6, "val": 0.2, "test": 0.2}},
    "simulate": {"shards": 2},
    "grids": {"multiphase": {"two_theta_min_deg": 5.0, "two_theta_max_deg": 120.0, "n_bins": 512}},
    "datasets": {"multiphase": {"chunk_rows": 8, "splits": {
        "train": {"materials": ["train"], "n_samples": 24},
        "val": {"materials": ["val"], "n_samples": 8}}}},
    "single_phase": {"runs": {}},
    "multi_phase": {"runs": {}},
}


@pytest.fixture(scope="module")
def regen_workdir(tmp_path_factory):
    return make_workdir(tmp_path_factory.mktemp("regenerate"), REGEN)


def test_regenerate_names_an_unknown_dataset_or_split(regen_workdir):
    from xrdbench.errors import ConfigError
    from xrdbench.regenerate import regenerate

    with pytest.raises(ConfigError, match=r"dataset 'nope'.*multiphase"):
        regenerate("nope", "train", configfile=None, directory=regen_workdir)
    with pytest.raises(ConfigError, match=r"'multiphase' has no split 'test'.*'train', 'val'"):
        regenerate("multiphase", "test", configfile=None, directory=regen_workdir)
    with pytest.raises(ConfigError, match=r"source 'coremof'.*disabled"):
        regenerate("mof", "train", configfile=None, directory=regen_workdir)
    assert not (regen_workdir / "results").exists()


def test_regenerate_command_parses():
    import argparse

    from xrdbench.regenerate import add_regenerate_command, cmd_regenerate

    parser = argparse.ArgumentParser()
    add_regenerate_command(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["regenerate", "--dataset", "mof", "--split", "test",
                              "--configfile", "a.yaml", "b.yaml", "--cores", "3"])
    assert (args.dataset, args.split, args.configfile, args.cores) == ("mof", "test", ["a.yaml", "b.yaml"], 3)
    assert args.handler is cmd_regenerate and args.threads == 1


def _arrays(store: Path) -> dict[str, bytes]:
    return {str(p.relative_to(store)): p.read_bytes() for p in sorted(store.rglob("*")) if p.is_file()}


@pytest.mark.integration
def test_regenerate_rebuilds_a_split_byte_for_byte(regen_workdir):
    from xrdbench.regenerate import regenerate, store_digest

    target = "results/datasets/multiphase/train.zarr"
    result = snakemake(regen_workdir, "--cores", "2", target)
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    store = regen_workdir / target
    original, digest = _arrays(store), store_digest(store)
    assert any(name.startswith("x/") for name in original) and len(original) > 5
    bank = regen_workdir / "results/banks/synthetic/multiphase.zarr"
    bank_mtime = max(p.stat().st_mtime_ns for p in bank.rglob("*"))
    # A damaged split (a chunk lost) is rebuilt, not skipped, and comes back identical.
    next(p for p in sorted(store.rglob("*")) if p.is_file() and "x" in p.relative_to(store).parts[:1]).unlink()

    regenerated = regenerate("multiphase", "train", configfile="config.yaml", cores=2, directory=regen_workdir)
    assert regenerated.path == store.resolve() or regenerated.path == store
    assert regenerated.before != digest and regenerated.after == digest
    assert _arrays(store) == original
    assert max(p.stat().st_mtime_ns for p in bank.rglob("*")) == bank_mtime, "the bank was rebuilt"
    log = (regen_workdir / "results/logs/build_dataset/multiphase/train.log")
    assert log.exists()

    again = regenerate("multiphase", "train", configfile=None, cores=2, directory=regen_workdir)
    assert again.identical is True and _arrays(store) == original


@pytest.mark.parametrize("name", sorted(PRESETS) + ["default"])
def test_every_run_of_a_preset_builds_on_its_grid(name, repo_config_workdir):
    """A preset whose grid is too short for a model's convolutions would fail hours into a run."""
    from xrdbench.models import build_model
    from xrdbench.regenerate import resolved_config
    from xrdbench.simulate.grids import Grid
    from xrdbench.train.runs import run_tasks

    config = resolved_config(repo_config_workdir, []) if name == "default" else resolved(name, repo_config_workdir)
    for benchmark, dataset in (("single_phase", config["single_phase"]["train_dataset"]),
                               ("multi_phase", config["multi_phase"]["train_dataset"])):
        grid_name = config["datasets"][dataset]["grid"]
        spec = config["grids"][grid_name]
        grid = Grid(grid_name, spec["two_theta_min_deg"], spec["two_theta_max_deg"], spec["n_bins"])
        for run_name, run in config[benchmark]["runs"].items():
            model = build_model(run["model"], preset=config[benchmark]["preset"], two_theta_deg=grid.two_theta_deg,
                                tasks=run_tasks(run_name, run), **run.get("options", {}))
            assert sum(p.numel() for p in model.parameters()) > 0, (name, run_name)
