"""The benchmark's pieces that stand on their own (`scripts/benchmark.py`; `scripts/bench/` holds the
sections that train): the ANN corpus's vectors, the growth exponents of the scale section and the
serving-at-scale comparison it runs.
"""
