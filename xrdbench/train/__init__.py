"""Stage ``train``: data loading, the shared trainer and MGDA-UB multi-task optimisation."""
