"""The package code of the diagnostic scripts (`scripts/`): what they measure, tested here; the
scripts only parse their command lines and print.

- `headroom`: how much each world phenomenon leaves an ideal ranker to gain (`scripts/headroom.py`);
- `learnability`: whether a tower can learn the world's feature interaction
  (`scripts/crossing_learnability.py`);
- `index_filter`: filtered search through faiss (`scripts/index_filter_benchmark.py`);
- `bench`: the benchmark's sections that need no training (`scripts/benchmark.py`).
"""
