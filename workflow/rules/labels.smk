rule label_structures:
    input:
        manifest="resources/structures/{source}/manifest.parquet",
    output:
        table="results/structures/{source}.parquet",
        rejected="results/structures/{source}.rejected.csv",
    params:
        options=options_json(config["labels"]),
        quiet=quiet_flag(),
    threads: config["threads"]
    log:
        "results/logs/label_structures/{source}.log",
    benchmark:
        "results/benchmarks/label_structures/{source}.tsv"
    conda:
        "../../envs/xrdbench.yaml"
    shell:
        "xrdbench {params.quiet} label --options {params.options:q} --threads {threads}"
        " --manifest {input.manifest} --out {output.table} --rejected {output.rejected} > {log} 2>&1"
