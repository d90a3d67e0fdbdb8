rule evaluate_single_phase:
    input:
        data="results/datasets/{dataset}/{split}.zarr",
        weights=f"results/models/{config['single_phase']['train_dataset']}/{{run}}/best.pt",
        summary=f"results/models/{config['single_phase']['train_dataset']}/{{run}}/training.json",
    output:
        metrics="results/eval/{dataset}/{run}/{split}.json",
        predictions="results/eval/{dataset}/{run}/{split}.predictions.parquet",
        confusion="results/eval/{dataset}/{run}/{split}.confusion.csv",
    wildcard_constraints:
        run=single_phase_run_pattern(),
        split="(?!train$)[A-Za-z0-9_-]+",
    params:
        options=options_json({"device": config["single_phase"]["device"]}),
        model_dir=subpath(input.weights, parent=True),
        prefix=subpath(output.metrics, strip_suffix=".json"),
        quiet=quiet_flag(),
    threads: config["single_phase"]["threads"]
    log:
        "results/logs/evaluate/{dataset}/{run}/{split}.log",
    benchmark:
        "results/benchmarks/evaluate/{dataset}/{run}/{split}.tsv"
    conda:
        "../../envs/xrdbench.yaml"
    shell:
        "xrdbench {params.quiet} evaluate --options {params.options:q} --threads {threads} --model {params.model_dir}"
        " --dataset {wildcards.dataset} --split {wildcards.split} --data {input.data} --out {params.prefix} > {log} 2>&1"


rule evaluate_multi_phase:
    input:
        data="results/datasets/{dataset}/{split}.zarr",
        weights=benchmark_model_file("multi_phase", "best.pt"),
        summary=benchmark_model_file("multi_phase", "training.json"),
    output:
        metrics="results/eval/{dataset}/{run}/{split}.json",
        predictions="results/eval/{dataset}/{run}/{split}.predictions.parquet",
    wildcard_constraints:
        run=multi_phase_run_pattern(),
        split="(?!train$)[A-Za-z0-9_-]+",
    params:
        options=options_json({"device": config["multi_phase"]["device"]}),
        model_dir=subpath(input.weights, parent=True),
        prefix=subpath(output.metrics, strip_suffix=".json"),
        quiet=quiet_flag(),
    threads: config["multi_phase"]["threads"]
    log:
        "results/logs/evaluate/{dataset}/{run}/{split}.log",
    benchmark:
        "results/benchmarks/evaluate/{dataset}/{run}/{split}.tsv"
    conda:
        "../../envs/xrdbench.yaml"
    shell:
        "xrdbench {params.quiet} evaluate --options {params.options:q} --threads {threads} --model {params.model_dir}"
        " --dataset {wildcards.dataset} --split {wildcards.split} --data {input.data} --out {params.prefix}"
        " > {log} 2>&1"
