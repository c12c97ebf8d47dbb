"""Experiments: benchmarks, tuning, sweeps, the results store, reports and the paper reproductions."""
