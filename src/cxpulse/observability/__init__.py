"""Watching the service from outside: Prometheus instruments (SPEC §6)."""
