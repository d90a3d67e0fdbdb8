rule build_dataset:
    input:
        bank=lambda wildcards: dataset_bank(wildcards.dataset),
        splits=lambda wildcards: dataset_split_table(wildcards.dataset),
    output:
        store=directory("results/datasets/{dataset}/{split}.zarr"),
    params:
        options=lambda wildcards: dataset_options_json(wildcards.dataset),
        dask=options_json(config["dask"]),
        quiet=quiet_flag(),
    threads: config["threads"]
    log:
        "results/logs/build_dataset/{dataset}/{split}.log",
    benchmark:
        "results/benchmarks/build_dataset/{dataset}/{split}.tsv"
    conda:
        "../../envs/xrdbench.yaml"
    shell:
        "xrdbench {params.quiet} augment --options {params.options:q} --dask {params.dask:q}"
        " --threads {threads} --dataset {wildcards.dataset} --split {wildcards.split}"
        " --bank {input.bank} --splits {input.splits} --out {output.store} > {log} 2>&1"
