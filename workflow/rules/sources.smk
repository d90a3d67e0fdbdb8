rule fetch_structures:
    output:
        manifest="resources/structures/{source}/manifest.parquet",
    params:
        options=source_options,
        cache="resources/cache/{source}",
        quiet=quiet_flag(),
    threads: config["threads"]
    log:
        "results/logs/fetch_structures/{source}.log",
    benchmark:
        "results/benchmarks/fetch_structures/{source}.tsv"
    conda:
        "../../envs/xrdbench.yaml"
    shell:
        "xrdbench {params.quiet} fetch {wildcards.source} --options {params.options:q}"
        " --threads {threads} --cache-dir {params.cache} --manifest {output.manifest} > {log} 2>&1"
