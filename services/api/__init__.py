"""API: pulse readings, breakdowns, series, health — and, in the embedded shape, ingest too."""
