"""``xrdbench predict``: a trained model applied to measured powder patterns (.xy, .xye, .csv, .txt)."""

from xrdbench.predict.patterns import (
    MeasuredPattern,
    convert_wavelength,
    normalize_pattern,
    parse_pattern_text,
    read_pattern,
    resample_to_grid,
)
from xrdbench.predict.predict import (
    add_predict_command,
    format_predictions,
    input_normalization,
    predict_arrays,
    predict_patterns,
    predictions_frame,
    prepare_input,
    run_predict,
    write_predictions,
)

__all__ = [
    "MeasuredPattern",
    "add_predict_command",
    "convert_wavelength",
    "format_predictions",
    "input_normalization",
    "normalize_pattern",
    "parse_pattern_text",
    "predict_arrays",
    "predict_patterns",
    "predictions_frame",
    "prepare_input",
    "read_pattern",
    "resample_to_grid",
    "run_predict",
    "write_predictions",
]
