-- Migration 006: one row per subscription interval (issue 9), so churn and retention read plain columns.
-- Reading `subscriber_facts` (one row per customer, intervals in arrays) cost a search through every
-- customer's arrays per span. Here each interval is a row: active at a span's start is
-- `started_ms < start <= end_ms`, with the dimensions of that interval; whether the customer is still a
-- subscriber at the span's end needs that interval's end or one of the customer's later intervals
-- (`later_starts`, `later_ends`; empty for most). A materialized view derives the rows from every insert
-- into `subscriber_facts`, signs included, so the writer, its recovery and the bulk derivation stay as
-- they are; the rows already there are copied once here (again if this is re-run: the table is emptied
-- first; nothing writes while migrations run).
CREATE TABLE IF NOT EXISTS {db}.subscription_intervals
(
    customer_id   String,
    started_ms    Int64,
    end_ms        Int64,
    cancel_ms     Int64,
    touchpoint    LowCardinality(String),
    channel       LowCardinality(String),
    segment       LowCardinality(String),
    later_starts  Array(Int64),
    later_ends    Array(Int64),
    sign          Int8
)
ENGINE = MergeTree
ORDER BY started_ms;

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.subscription_intervals_mv TO {db}.subscription_intervals AS
SELECT customer_id, started[k] AS started_ms, ends[k] AS end_ms, cancels[k] AS cancel_ms,
       touchpoints[k] AS touchpoint, channels[k] AS channel, segments[k] AS segment,
       arraySlice(started, k + 1) AS later_starts, arraySlice(ends, k + 1) AS later_ends, sign
FROM {db}.subscriber_facts ARRAY JOIN arrayEnumerate(started) AS k;

TRUNCATE TABLE {db}.subscription_intervals;

INSERT INTO {db}.subscription_intervals
SELECT customer_id, started[k], ends[k], cancels[k], touchpoints[k], channels[k], segments[k],
       arraySlice(started, k + 1), arraySlice(ends, k + 1), sign
FROM {db}.subscriber_facts ARRAY JOIN arrayEnumerate(started) AS k;
