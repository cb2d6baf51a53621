"""Aggregator: keyed per-customer state and facts — embedded (in-process) or as Faust agents."""
