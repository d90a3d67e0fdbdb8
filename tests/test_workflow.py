"""A real Snakemake run of the workflow on a tiny config in a temporary directory."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

pytestmark = pytest.mark.integration

SINGLE_PHASE_MODELS = ("mlp", "cnn", "nopool_cnn", "rcnet", "xrdmamba", "xrdecoupler")

TINY_CONFIG = {
    "threads": 2,
    "progress": False,
    "sources": {
        "coremof": {"max_structures": 10, "seed": 0},
        "synthetic": {"per_space_group": 1, "space_groups": [1, 2, 14, 62, 139, 166, 194, 225]},
    },
    "splits": {"fractions": {"train": 0.6, "val": 0.2, "test": 0.2}, "balanced_per_group": 1},
    "datasets": {"multiphase": {"chunk_rows": 32, "splits": {
        "train": {"materials": ["train"], "n_samples": 64},
        "val": {"materials": ["val"], "n_samples": 16},
        "test": {"materials": ["test"], "n_samples": 16},
        "in_library": {"materials": ["in_library"], "n_samples": 16}}}},
    "grids": {"xrdecoupler": {"two_theta_min_deg": 5.0, "two_theta_max_deg": 90.0, "n_bins": 1700}},
    "single_phase": {
        "preset": "demo", "threads": 1, "train": {"epochs": 1},
        "evaluate": {"mof": ["test"], "inorganic": ["test"]},
        "runs": {**{name: {"model": name} for name in SINGLE_PHASE_MODELS},
                 "xrdecoupler": {"model": "xrdecoupler", "superclasses": ["crystal_system", "point_group"]},
                 "xrdecoupler_global_only": {"model": "xrdecoupler", "superclasses": ["crystal_system"],
                                             "options": {"use_local": False}}}},
    "multi_phase": {"preset": "demo", "threads": 1,
                    "train": {"steps": 4, "eval_every": 2, "warmup_steps": 1, "batch_rows": 16}},
}
MULTI_PHASE_MODELS = ("multilabel_cnn", "multilabel_transformer", "phase_cluster_transformer")


# The rules call the xrdbench CLI installed beside this interpreter.
ENV = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")


def snakemake(workdir: Path, *args: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "snakemake", "--cores", "2", "--directory", str(workdir),
               "--snakefile", str(workdir / "Snakefile"), *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=600, env=ENV)


def make_workdir(root: Path, repo_root: Path) -> Path:
    """A copy of the workflow (Snakefile, rules, schema, profiles) with the tiny config."""
    root.mkdir(parents=True, exist_ok=True)
    shutil.copy(repo_root / "Snakefile", root / "Snakefile")
    shutil.copytree(repo_root / "workflow", root / "workflow")
    shutil.copytree(repo_root / "envs", root / "envs")
    (root / "profiles").symlink_to("workflow/profiles")
    (root / "config.yaml").write_text(yaml.safe_dump(TINY_CONFIG))
    return root


@pytest.fixture(scope="module")
def workdir(tmp_path_factory, repo_root):
    return make_workdir(tmp_path_factory.mktemp("workflow"), repo_root)


@pytest.fixture(scope="module")
def first_run(workdir):
    result = snakemake(workdir, "all")
    assert result.returncode == 0, result.stderr[-4000:]
    return result


def test_all_builds_every_stage(workdir, first_run):
    for source in ("coremof", "synthetic"):
        manifest = pd.read_parquet(workdir / f"resources/structures/{source}/manifest.parquet")
        structures = pd.read_parquet(workdir / f"results/structures/{source}.parquet")
        rejected = pd.read_csv(workdir / f"results/structures/{source}.rejected.csv")
        splits = pd.read_parquet(workdir / f"results/splits/{source}.parquet")
        assert len(structures) + len(rejected) == len(manifest) > 0
        assert set(splits["id"]) == set(structures["id"])
        assert structures["space_group"].between(1, 230).all()
        for rule in ("fetch_structures", "label_structures", "split_materials"):
            assert (workdir / f"results/benchmarks/{rule}/{source}.tsv").exists()
            assert (workdir / f"results/logs/{rule}/{source}.log").exists()
    synthetic = pd.read_parquet(workdir / "results/structures/synthetic.parquet")
    assert sorted(synthetic["space_group"]) == TINY_CONFIG["sources"]["synthetic"]["space_groups"]
    import zarr

    for dataset, splits in (("mof", ("train", "val", "test")), ("mof_balanced", ("test",)), ("inorganic", ("test",)),
                            ("multiphase", ("train", "val", "test", "in_library"))):
        for split in splits:
            store = zarr.open_group(str(workdir / f"results/datasets/{dataset}/{split}.zarr"), mode="r")
            assert store["x"].shape[0] == store["y"].shape[0] > 0
            assert (workdir / f"results/benchmarks/build_dataset/{dataset}/{split}.tsv").exists()
    assert zarr.open_group(str(workdir / "results/datasets/multiphase/train.zarr"), mode="r")["x"].shape == (64, 2048)
    assert (workdir / "results/reports/figures/augmentations.png").stat().st_size > 10_000


def test_every_single_phase_run_trains_and_evaluates(workdir, first_run):
    import json

    for run in TINY_CONFIG["single_phase"]["runs"]:
        spec = json.loads((workdir / f"results/models/mof/{run}/model.json").read_text())
        assert spec["grid"]["n_bins"] == 1700 and spec["preset"] == "demo"
        assert len(pd.read_csv(workdir / f"results/models/mof/{run}/history.csv")) == 1
        for dataset in ("mof", "inorganic"):
            metrics = json.loads((workdir / f"results/eval/{dataset}/{run}/test.json").read_text())
            assert 0 <= metrics["top1"] <= metrics["top2"] <= metrics["top5"] <= 1
            assert metrics["meta"]["run"] == run and metrics["meta"]["dataset"] == dataset
            assert (workdir / f"results/eval/{dataset}/{run}/test.predictions.parquet").exists()
    assert not (workdir / "results/eval/mof/cnn/train.json").exists()


def test_every_multi_phase_run_trains_and_evaluates(workdir, first_run):
    import json

    for run in MULTI_PHASE_MODELS:
        spec = json.loads((workdir / f"results/models/multiphase/{run}/model.json").read_text())
        assert spec["kind"] == "multi_phase" and spec["preset"] == "demo" and spec["grid"]["n_bins"] == 2048
        assert list(pd.read_csv(workdir / f"results/models/multiphase/{run}/history.csv")["step"]) == [2, 4]
        for split in ("in_library", "test"):
            metrics = json.loads((workdir / f"results/eval/multiphase/{run}/{split}.json").read_text())
            chosen = metrics["best_gate"] if run == "phase_cluster_transformer" else metrics
            assert 0 <= chosen["micro_f1"] <= 1 and metrics["n_samples"] == 16
            assert metrics["meta"]["run"] == run and metrics["meta"]["split"] == split
            assert (workdir / f"results/eval/multiphase/{run}/{split}.predictions.parquet").exists()
            assert (workdir / f"results/benchmarks/evaluate/multiphase/{run}/{split}.tsv").exists()
        assert (workdir / f"results/logs/train/multiphase/{run}.log").exists()
    assert not (workdir / "results/eval/multiphase/multilabel_cnn/train.json").exists()


def test_training_jobs_ask_for_a_gpu(workdir, first_run):
    result = snakemake(workdir, "-n", "--forcerun", "train_single_phase", "results/eval/mof/cnn/test.json")
    assert result.returncode == 0, result.stderr[-2000:]
    out = result.stdout + result.stderr
    job = out[out.index("rule train_single_phase:"):]
    assert "gpu=1" in job[:job.index("Shell command")]
    result = snakemake(workdir, "-n", "--forcerun", "train_multi_phase",
                       "results/eval/multiphase/multilabel_cnn/test.json")
    assert result.returncode == 0, result.stderr[-2000:]
    out = result.stdout + result.stderr
    job = out[out.index("rule train_multi_phase:"):]
    assert "gpu=1" in job[:job.index("Shell command")]


def test_second_run_has_nothing_to_do(workdir, first_run):
    result = snakemake(workdir, "all")
    assert result.returncode == 0
    assert "Nothing to be done" in result.stdout + result.stderr


def test_changing_split_options_reruns_only_splits(workdir, first_run):
    change = workdir / "seed7.yaml"
    change.write_text(yaml.safe_dump({"splits": {"seed": 7}}))
    result = snakemake(workdir, "all", "-n", "--configfile", str(change))
    assert result.returncode == 0, result.stderr[-2000:]
    out = result.stdout + result.stderr
    assert "split_materials" in out
    assert "label_structures" not in out and "fetch_structures" not in out


def test_changing_a_report_option_reruns_only_the_report(workdir, first_run):
    change = workdir / "tsne.yaml"
    change.write_text(yaml.safe_dump({"report": {"tsne_samples": 5}}))
    result = snakemake(workdir, "all", "-n", "--configfile", str(change))
    assert result.returncode == 0, result.stderr[-2000:]
    out = result.stdout + result.stderr
    jobs = out[out.index("Job stats"):].split("\n\n")[0]
    assert "report_figures" in jobs
    for rule in ("train_single_phase", "evaluate_single_phase", "build_dataset", "report_tables"):
        assert rule not in jobs, jobs


def test_report_tables_and_figures_are_written(workdir, first_run):
    tables = workdir / "results/reports/tables"
    for name in ("single_phase_table1", "single_phase_table2", "superclass_accuracy", "multi_phase_table1"):
        for ext in ("md", "csv", "tex"):
            assert (tables / f"{name}.{ext}").stat().st_size > 0
    assert "XRDecoupler" in (tables / "single_phase_table1.md").read_text()
    for name in ("spc_bars", "tsne", "confusion_family", "val_f1_curves", "slot_diversity", "stratified"):
        assert (workdir / f"results/reports/figures/{name}.png").stat().st_size > 5_000


def test_bad_config_fails_before_any_job_naming_the_key(workdir, first_run):
    bad = workdir / "bad.yaml"
    bad.write_text(yaml.safe_dump({"labels": {"occupancy": "sometimes"}}))
    result = snakemake(workdir, "all", "-n", "--configfile", str(bad))
    assert result.returncode != 0
    assert "occupancy" in result.stderr + result.stdout


def test_lint_is_clean(workdir):
    result = snakemake(workdir, "--lint")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Congratulations" in result.stdout + result.stderr


def _store_files(store: Path) -> dict[str, bytes]:
    return {str(p.relative_to(store)): p.read_bytes() for p in sorted(store.rglob("*")) if p.is_file()}


def test_killed_bank_build_resumes_to_the_identical_bank(tmp_path, repo_root, workdir, first_run):
    """SIGKILL the whole Snakemake process group mid-simulation, rerun, compare with the clean build."""
    import signal
    import time

    killed = make_workdir(tmp_path / "killed", repo_root)
    target = "results/banks/coremof/xrdecoupler.zarr"
    shard_dir = killed / "results/banks/coremof/xrdecoupler.shards"
    command = [sys.executable, "-m", "snakemake", "--cores", "1", "--directory", str(killed),
               "--snakefile", str(killed / "Snakefile"), target]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True, env=ENV)
    shard_logs = killed / "results/logs/simulate_shard/coremof/xrdecoupler"
    deadline = time.monotonic() + 300
    # Kill once one shard is finished and the next shard's job has started.
    while time.monotonic() < deadline and process.poll() is None:
        if list(shard_dir.glob("*.npz")) and len(list(shard_logs.glob("*.log"))) >= 2:
            break
        time.sleep(0.02)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    done_before = {p.name: p.stat().st_mtime_ns for p in shard_dir.glob("*.npz")}
    assert 0 < len(done_before) < 4, "the kill should land between the first and the last shard"
    first_done = min(done_before, key=done_before.get)
    assert not (killed / target).exists()
    for shard in shard_dir.glob("*.npz"):  # anything named like a shard is complete; temporaries are hidden
        with np.load(shard) as arrays:
            assert len(arrays["offsets"]) == len(arrays["material_id"]) + 1

    # A hard kill leaves Snakemake's lock behind, as a power loss would: unlock, then rerun.
    assert snakemake(killed, "--unlock").returncode == 0
    result = snakemake(killed, target)
    assert result.returncode == 0, result.stderr[-4000:]
    assert (shard_dir / first_done).stat().st_mtime_ns == done_before[first_done], "a finished shard was redone"
    assert _store_files(killed / target) == _store_files(workdir / target)
