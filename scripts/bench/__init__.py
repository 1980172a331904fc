"""The pieces of `scripts/benchmark.py`, one module per measured area (those that need no script,
such as the ANN corpus's vectors and the growth exponents, are in `ebr.diagnostics.bench`).

They import ebr only through its public modules (`python scripts/benchmark.py` has scripts/ on
sys.path).
"""
