"""The pieces of `scripts/benchmark.py`, one module per measured area.

They import ebr only through its public modules and are importable on their own (tests load them
with scripts/ on sys.path, as `python scripts/benchmark.py` has it).
"""
