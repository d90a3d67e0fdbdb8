rule train_single_phase:
    input:
        train="results/datasets/{dataset}/train.zarr",
        val="results/datasets/{dataset}/val.zarr",
    output:
        # last.pt is left undeclared on purpose: Snakemake keeps it when a job fails, so a rerun resumes.
        spec="results/models/{dataset}/{run}/model.json",
        weights="results/models/{dataset}/{run}/best.pt",
        history="results/models/{dataset}/{run}/history.csv",
        summary="results/models/{dataset}/{run}/training.json",
    wildcard_constraints:
        run=single_phase_run_pattern(),
    params:
        options=lambda wildcards: single_phase_run_json(wildcards.run),
        model_dir=subpath(output.spec, parent=True),
        quiet=quiet_flag(),
    threads: config["single_phase"]["threads"]
    resources:
        gpu=1,
    log:
        "results/logs/train/{dataset}/{run}.log",
    benchmark:
        "results/benchmarks/train/{dataset}/{run}.tsv"
    conda:
        "../../envs/xrdbench.yaml"
    shell:
        "xrdbench {params.quiet} train --options {params.options:q} --threads {threads} --run {wildcards.run}"
        " --dataset {wildcards.dataset} --train {input.train} --val {input.val} --out {params.model_dir} > {log} 2>&1"


rule train_multi_phase:
    input:
        train="results/datasets/{dataset}/train.zarr",
        val="results/datasets/{dataset}/val.zarr",
    output:
        # last.pt is left undeclared on purpose: Snakemake keeps it when a job fails, so a rerun resumes.
        spec="results/models/{dataset}/{run}/model.json",
        weights="results/models/{dataset}/{run}/best.pt",
        history="results/models/{dataset}/{run}/history.csv",
        summary="results/models/{dataset}/{run}/training.json",
    wildcard_constraints:
        run=multi_phase_run_pattern(),
    params:
        options=lambda wildcards: multi_phase_run_json(wildcards.run),
        model_dir=subpath(output.spec, parent=True),
        quiet=quiet_flag(),
    threads: config["multi_phase"]["threads"]
    resources:
        gpu=1,
    log:
        "results/logs/train/{dataset}/{run}.log",
    benchmark:
        "results/benchmarks/train/{dataset}/{run}.tsv"
    conda:
        "../../envs/xrdbench.yaml"
    shell:
        "xrdbench {params.quiet} train --options {params.options:q} --threads {threads} --run {wildcards.run}"
        " --dataset {wildcards.dataset} --train {input.train} --val {input.val} --out {params.model_dir} > {log} 2>&1"
