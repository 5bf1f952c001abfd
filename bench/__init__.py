"""The benchmark of st-middleware: what the middleware costs next to a bare app and a floor.

Run it with ``bash bench/run`` (sets things up) or ``python -m bench``; see
BENCHMARKS.md for what is measured and how, and :mod:`bench.runner`.
"""
