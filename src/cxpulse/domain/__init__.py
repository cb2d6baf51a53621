"""The pure KPI domain: events, keyed state, windows, metrics and statistics.

Nothing here imports Kafka, Faust, ClickHouse or FastAPI, so the embedded runner and the Faust agents call
exactly the same code.
"""
