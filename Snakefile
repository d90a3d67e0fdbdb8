# xrdbench: crystal structures -> PXRD benchmark datasets -> baselines -> paper tables.
# This file is an index; the rules live in workflow/rules/, one file per stage.
# Usage: snakemake --cores 32 all   (paper scale: --configfile workflow/presets/paper.yaml)

from snakemake.utils import min_version, validate

from xrdbench.config import check_config

min_version("9.0")


configfile: "config.yaml"


validate(config, "workflow/schemas/config.schema.yaml")
check_config(config)


include: "workflow/rules/common.smk"
include: "workflow/rules/sources.smk"
include: "workflow/rules/labels.smk"
include: "workflow/rules/splits.smk"
include: "workflow/rules/banks.smk"
include: "workflow/rules/datasets.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/report.smk"


rule all:
    input:
        all_outputs(),
    default_target: True
