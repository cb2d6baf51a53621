"""End-to-end fixtures: the per-test Kafka names and `cxpulse` subprocesses (see tests/kafka_support.py)."""

from tests.kafka_support import procs

__all__ = ["procs"]
