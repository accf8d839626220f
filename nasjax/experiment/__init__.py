"""Experiment logic shared by the scripts in `experiments/` (which stay thin: flags, calls, tables,
plots)."""
