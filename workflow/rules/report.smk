rule augmentation_figure:
    input:
        bank=dataset_bank("multiphase"),
    output:
        figure=report(
            "results/reports/figures/augmentations.png",
            caption="../report/augmentations.rst",
            category="Datasets",
        ),
    params:
        options=lambda wildcards: json.dumps(dataset_options(config, "multiphase")["augment"], sort_keys=True),
        quiet=quiet_flag(),
    log:
        "results/logs/augmentation_figure.log",
    benchmark:
        "results/benchmarks/augmentation_figure.tsv"
    conda:
        "../../envs/xrdbench.yaml"
    shell:
        "xrdbench {params.quiet} report augmentations --options {params.options:q}"
        " --bank {input.bank} --out {output.figure} > {log} 2>&1"


rule report_tables:
    input:
        evaluations=lambda wildcards: all_evaluations(),
    output:
        tables=[report(path, caption="../report/tables.rst", category="Tables", labels={"table": name})
                for name, path in expected_table_csvs()],
        other=expected_table_companions(),
    log:
        "results/logs/report_tables.log",
    benchmark:
        "results/benchmarks/report_tables.tsv"
    conda:
        "../../envs/xrdbench.yaml"
    shell:
        "xrdbench report tables --results results --out results/reports/tables > {log} 2>&1"


rule report_figures:
    input:
        evaluations=lambda wildcards: all_evaluations(),
        histories=lambda wildcards: all_histories(),
        tsne_split=f"results/datasets/{config['single_phase']['train_dataset']}/{config['report']['tsne_split']}.zarr",
    output:
        figures=[report(f"results/reports/figures/{name}.png", caption=f"../report/{name}.rst", category="Figures")
                 for name in expected_figures()],
    params:
        options=lambda wildcards: report_options_json(),
        quiet=quiet_flag(),
    threads: config["single_phase"]["threads"]
    log:
        "results/logs/report_figures.log",
    benchmark:
        "results/benchmarks/report_figures.tsv"
    conda:
        "../../envs/xrdbench.yaml"
    shell:
        "xrdbench {params.quiet} report figures --options {params.options:q} --threads {threads}"
        " --results results --out results/reports/figures > {log} 2>&1"
