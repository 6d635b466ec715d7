"""Benchmarks: ``python -m benchmarks.<name>`` prints a table; ``--json PATH`` saves it."""
