"""Stage ``report``: tables and figures built from the earlier stages' outputs."""
