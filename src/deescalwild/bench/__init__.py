"""The benchmark: cases, metrics, evaluation, statistics and the report."""
