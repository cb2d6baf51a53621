"""Ingest: validates touchpoint events and hands them to the bus (in-process or Kafka)."""
