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
