rule simulate_shard:
    input:
        table="results/structures/{source}.parquet",
    output:
        sticks="results/banks/{source}/{grid}.shards/{shard}.npz",
    params:
        options=lambda wildcards: simulation_options(wildcards.grid, with_render=False),
        shards=config["simulate"]["shards"],
        quiet=quiet_flag(),
    threads: config["threads"]
    log:
        "results/logs/simulate_shard/{source}/{grid}/{shard}.log",
    benchmark:
        "results/benchmarks/simulate_shard/{source}/{grid}/{shard}.tsv"
    conda:
        "../../envs/xrdbench.yaml"
    shell:
        "xrdbench {params.quiet} simulate --options {params.options:q} --threads {threads}"
        " --structures {input.table} --shard {wildcards.shard} --shards {params.shards}"
        " --out {output.sticks} > {log} 2>&1"


rule build_bank:
    input:
        table="results/structures/{source}.parquet",
        shards=lambda wildcards: bank_shards(wildcards.source, wildcards.grid),
    output:
        bank=directory("results/banks/{source}/{grid}.zarr"),
        failed="results/banks/{source}/{grid}.failed.csv",
    params:
        options=lambda wildcards: simulation_options(wildcards.grid, with_render=True),
        quiet=quiet_flag(),
    threads: config["threads"]
    log:
        "results/logs/build_bank/{source}/{grid}.log",
    benchmark:
        "results/benchmarks/build_bank/{source}/{grid}.tsv"
    conda:
        "../../envs/xrdbench.yaml"
    shell:
        "xrdbench {params.quiet} bank --options {params.options:q} --threads {threads}"
        " --structures {input.table} --out {output.bank} --failed {output.failed}"
        " {input.shards} > {log} 2>&1"
