"""Benchmarks as data: the registry of every benchmark (``recipes/benchmarks.yaml``), the readers of
release formats no training source uses, and loading a benchmark's files into sample-contract rows
with their gold labels checked.

They live in the data layer because the corpus reads them too (training rows that are benchmark
items are removed before training); scoring and the evaluation job, in ``evaluation``, read them
from here.

- :mod:`.registry`: the benchmark registry, validated
- :mod:`.readers`: benchmark-only release formats
- :mod:`.loading`: a benchmark's rows, complete or loud (``load_benchmark``, ``read_benchmark``)
- :mod:`.gold`: gold labels moved out of the text (options, boxes); :mod:`.checks`: unusable rows
"""
