-- Migration 003: rollups, so that a reading costs days, not events (issue 9).
-- `{db}` is replaced by the configured database name. Statements are separated by ';' at line end.
--
-- Event rollups hold whole days (and, for active customers, whole hours) of events; a reading takes the
-- whole buckets inside its spans from them and the partial edges from `events` (store/rollup_reads.py).
-- They are written by the single writer (the embedded processor) with `INSERT … SELECT … GROUP BY` from
-- the batches it stored, and each row carries `upto`: the last batch_seq the table covers. A reading takes
-- what a table does not cover yet from `events`, so a rollup that lags never changes a reading — nor does
-- a late event: it lands in its own day's bucket at the next catch-up.
-- Fact tables ordered by time hold signed rows: a fact that changes is retracted (sign −1, its old row)
-- and re-added (+1), so a window reads only its own slice and sums the signs.

-- Recent batches are found through a minmax index on batch_seq (rollup catch-up, unrolled rows).
ALTER TABLE {db}.events ADD INDEX IF NOT EXISTS batch_seq_minmax batch_seq TYPE minmax GRANULARITY 1;

ALTER TABLE {db}.events MATERIALIZE INDEX batch_seq_minmax SETTINGS mutations_sync = 2;

-- Dense customer numbers (1, 2, …) by customer_key, assigned once per customer when its first batch is
-- rolled up: the active-customer rollups are roaring bitmaps of these, hundreds of times faster to merge
-- than bitmaps of 64-bit hashes.
CREATE TABLE IF NOT EXISTS {db}.customer_numbers
(
    customer_key UInt64,
    num          UInt32
)
ENGINE = MergeTree
ORDER BY num;

-- The same numbers in memory for `joinGet` lookups; refilled from customer_numbers when a store is opened.
CREATE TABLE IF NOT EXISTS {db}.customer_number_index
(
    customer_key UInt64,
    num          UInt32
)
ENGINE = Join(ANY, LEFT, customer_key)
SETTINGS persistent = 0;

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.customer_number_index_mv TO {db}.customer_number_index
AS SELECT customer_key, num FROM {db}.customer_numbers;

-- Rollup rows are kept for five sets of dimensions (`dims`, a mask: touchpoint 4, channel 2, segment 1):
-- none (0), each alone (4, 2, 1) and all three (7); a dimension outside the set is ''. A reading takes the
-- smallest set holding its filters and breakdown, so an unfiltered pulse reads one row per bucket.

-- Survey answers and purchases counted per day and by everything their metrics read.
CREATE TABLE IF NOT EXISTS {db}.event_counts_1d
(
    type        LowCardinality(String),
    survey      LowCardinality(String),
    dims        UInt8,
    bucket      Int64,
    touchpoint  LowCardinality(String),
    channel     LowCardinality(String),
    segment     LowCardinality(String),
    scale       UInt8,
    score       Int16,
    referral    UInt8,
    n           SimpleAggregateFunction(sum, UInt64),
    upto        SimpleAggregateFunction(max, UInt64)
)
ENGINE = AggregatingMergeTree
ORDER BY (type, survey, dims, bucket, touchpoint, channel, segment, scale, score, referral);

-- Active customers per day and per hour.
CREATE TABLE IF NOT EXISTS {db}.active_1d
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

CREATE TABLE IF NOT EXISTS {db}.active_1h
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

-- Signed fact rows ordered by the time that places them in a window (the ReplacingMergeTree tables of
-- migration 001 stay the facts' upsert store and the distributed path's output).
CREATE TABLE IF NOT EXISTS {db}.case_facts
(
    resolved_ms   Int64,
    customer_id   String,
    case_id       String,
    first_ms      Int64,
    contacts      UInt32,
    recontact_ms  Nullable(Int64),
    touchpoint    LowCardinality(String),
    channel       LowCardinality(String),
    segment       LowCardinality(String),
    sign          Int8
)
ENGINE = MergeTree
ORDER BY (resolved_ms, customer_id, case_id);

CREATE TABLE IF NOT EXISTS {db}.trial_facts
(
    outcome_ms   Int64,
    customer_id  String,
    trial_id     String,
    started_ms   Int64,
    converted    UInt8,
    touchpoint   LowCardinality(String),
    channel      LowCardinality(String),
    segment      LowCardinality(String),
    sign         Int8
)
ENGINE = MergeTree
ORDER BY (outcome_ms, customer_id, trial_id);

-- Subscribers: one signed row per customer with all its subscription intervals (parallel arrays sorted by
-- start), so churn and retention read each customer once, with no grouping: the interval active at a
-- span's start and whether any is active at its end. An end / cancel of 9223372036854775807 is none.
CREATE TABLE IF NOT EXISTS {db}.subscriber_facts
(
    customer_id  String,
    started      Array(Int64),
    ends         Array(Int64),
    cancels      Array(Int64),
    touchpoints  Array(LowCardinality(String)),
    channels     Array(LowCardinality(String)),
    segments     Array(LowCardinality(String)),
    start_ids    Array(String),
    sign         Int8
)
ENGINE = MergeTree
ORDER BY customer_id;

-- The facts stored so far, once (a store upgraded to this migration keeps its readings).
INSERT INTO {db}.case_facts
SELECT resolved_ms, customer_id, case_id, first_ms, contacts, recontact_ms, touchpoint, channel, segment, 1
FROM {db}.cases FINAL;

INSERT INTO {db}.trial_facts
SELECT outcome_ms, customer_id, trial_id, started_ms, converted, touchpoint, channel, segment, 1
FROM {db}.trials FINAL;

INSERT INTO {db}.subscriber_facts
SELECT customer_id, arrayMap(x -> x.1, v), arrayMap(x -> x.2, v), arrayMap(x -> x.3, v), arrayMap(x -> x.4, v),
       arrayMap(x -> x.5, v), arrayMap(x -> x.6, v), arrayMap(x -> x.7, v), 1
FROM (
    SELECT customer_id, arraySort(x -> (x.1, x.7), groupArray((started_ms,
           least(ifNull(next_start_ms, 9223372036854775807), ifNull(cancel_ms, 9223372036854775807)),
           ifNull(cancel_ms, 9223372036854775807), toString(touchpoint), toString(channel), toString(segment),
           start_id))) AS v
    FROM {db}.subscriptions FINAL GROUP BY customer_id
);

-- Keyed state by customer in a key-value engine, so the processor loads the states a batch needs, when
-- it needs them, instead of all of them at start; the row with customer_id '' is the checkpoint.
CREATE TABLE IF NOT EXISTS {db}.customer_state_kv
(
    customer_id  String,
    version      UInt64,
    state        String
)
ENGINE = EmbeddedRocksDB
PRIMARY KEY customer_id
SETTINGS optimize_for_bulk_insert = 0;

INSERT INTO {db}.customer_state_kv SELECT customer_id, version, state FROM {db}.customer_state FINAL;

-- The stateful events of customers whose state a bulk derivation (store/bulk_state.py) left to be folded:
-- their customer_state_kv row says {"bulk": true}, and the processor folds these the first time it needs
-- the customer. Small granules: a batch looks up its customers here.
CREATE TABLE IF NOT EXISTS {db}.customer_events_bulk
(
    customer_id  String,
    event_id     String,
    type         LowCardinality(String),
    occurred_ms  Int64,
    case_id      String,
    trial_days   UInt16,
    touchpoint   LowCardinality(String),
    channel      LowCardinality(String),
    segment      LowCardinality(String)
)
ENGINE = MergeTree
ORDER BY customer_id
SETTINGS index_granularity = 128;

-- Flags about how the store is written; `distributed` = 1 once a distributed writer (loader or worker)
-- stored rows: those are neither numbered nor rolled up, so readings then come from raw SQL.
CREATE TABLE IF NOT EXISTS {db}.rollup_state
(
    name   String,
    value  UInt64
)
ENGINE = ReplacingMergeTree(value)
ORDER BY name
