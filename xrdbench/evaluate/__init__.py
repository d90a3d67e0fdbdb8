"""Stage ``evaluate``: metrics on the validation and test splits, never on training data."""
