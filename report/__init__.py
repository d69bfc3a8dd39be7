"""Pictures of a run: training curves, sweep comparisons and per-query analysis in one report."""
