rule split_materials:
    input:
        table="results/structures/{source}.parquet",
    output:
        splits="results/splits/{source}.parquet",
    params:
        options=options_json(config["splits"]),
        quiet=quiet_flag(),
    threads: config["threads"]
    log:
        "results/logs/split_materials/{source}.log",
    benchmark:
        "results/benchmarks/split_materials/{source}.tsv"
    conda:
        "../../envs/xrdbench.yaml"
    shell:
        "xrdbench {params.quiet} split --options {params.options:q} --threads {threads}"
        " --structures {input.table} --out {output.splits} > {log} 2>&1"
