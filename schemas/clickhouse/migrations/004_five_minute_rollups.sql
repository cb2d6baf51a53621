-- Migration 004: active customers per five minutes (issue 9), beside the day and hour bitmaps of migration
-- 003, so the raw edge of the active-customer family — a number lookup per event — is at most five minutes
-- at each end. A live reading's window always ends in the current hour: at thousands of events a second
-- the hour edge alone was millions of raw rows, and reads slowed down as the hour filled. Same columns as
-- active_1h; filled from the events by the next rollup catch-up (`upto` starts at 0).
CREATE TABLE IF NOT EXISTS {db}.active_5m
(
    dims        UInt8,
    bucket      Int64,
    touchpoint  LowCardinality(String),
    channel     LowCardinality(String),
    segment     LowCardinality(String),
    customers   AggregateFunction(groupBitmap, UInt32),
    upto        SimpleAggregateFunction(max, UInt64)
)
ENGINE = AggregatingMergeTree
ORDER BY (dims, bucket, touchpoint, channel, segment);
