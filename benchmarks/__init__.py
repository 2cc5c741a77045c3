"""Benchmarks and one-off studies: scripts run from a clone (python -m benchmarks.NAME), not installed."""
