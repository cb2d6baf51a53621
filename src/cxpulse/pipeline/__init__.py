"""Runtime-agnostic processing: dedup, the events table, keyed state and facts (embedded and Faust alike)."""
