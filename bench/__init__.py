"""Benchmarks of CX Pulse (not timed tests): synthetic workload, embedded ingest and pulse latency.

Run `python -m bench.embedded --help`. Results go to `bench/results/<timestamp>.json` (git-ignored).
"""
