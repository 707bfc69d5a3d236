"""Benchmarks: ``make bench`` runs every ``bench/bench_*.py`` module's ``main()``.

Each prints a table whose numbers are ratios against a raw baseline measured in the same
run (bare PyNaCl calls, raw nats-py), so results compare across machines. Nothing here
is asserted by the test suite: speed is measured, not timed in tests.
"""
