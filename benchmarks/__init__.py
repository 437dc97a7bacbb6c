"""Benchmark scripts (run as `python benchmarks/NAME.py`); a package only so that the
import-linter contract can check that nothing in llmarch_lab imports them."""
