-- Migration 007: the five-minute bitmaps keep no rows by all three dimensions (issue 9).
-- Those rows held 4.6 customers each at 10M events, 2.2M of the table's 2.5M rows, and most of the cost of
-- writing it (ingest catch-ups, and 15 of a startup's 80 s after a bulk import). Readings filtered by two
-- or more dimensions now take their edges from the hour bitmaps and raw events (`rollups.ACTIVE_SETS`),
-- and the catch-ups stopped writing them; this deletes the ones already there. Safe to run again.
ALTER TABLE {db}.active_5m DELETE WHERE dims = 7 SETTINGS mutations_sync = 2;
