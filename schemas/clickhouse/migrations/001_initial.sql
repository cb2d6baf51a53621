-- Migration 001: the initial CX Pulse store (ClickHouse SQL, shared by chDB and a ClickHouse server).
-- `{db}` is replaced by the configured database name. Statements are separated by ';' at line end.
-- Files here are applied once each, in number order, and recorded in {db}.schema_migrations: never edit
-- one that has shipped; add the next number instead.
-- Times are epoch milliseconds (UTC) in Int64 columns: plain integer arithmetic, no time-zone surprises.

CREATE DATABASE IF NOT EXISTS {db};

-- Every accepted event, once (duplicates are dropped before insert; the first accepted wins).
CREATE TABLE IF NOT EXISTS {db}.events
(
    event_id     String,
    type         LowCardinality(String),
    occurred_ms  Int64,
    customer_id  String,
    touchpoint   LowCardinality(String),
    channel      LowCardinality(String),
    segment      LowCardinality(String),
    survey       LowCardinality(String),
    score        Nullable(Int16),
    scale        UInt8,
    comment      String,
    case_id      String,
    order_id     String,
    amount       Nullable(Float64),
    currency     LowCardinality(String),
    referral     UInt8,
    referrer_id  String,
    trial_days   UInt16,
    plan         String,
    reason       String,
    properties   String,
    received_ms  Int64,
    batch_seq    UInt64,
    -- distinct-customer counts hash 64-bit integers, several times faster than hashing strings
    customer_key UInt64 MATERIALIZED cityHash64(customer_id)
)
ENGINE = MergeTree
ORDER BY (type, survey, occurred_ms);

-- The ids of stored events, in memory (a hash set), for the duplicate check before every insert: a lookup
-- of 1000 ids costs ~3 ms whatever the table size. Filled by the view below on every insert into events,
-- and refilled from events whenever a process opens the store (it is not persisted).
CREATE TABLE IF NOT EXISTS {db}.event_ids
(
    id_hash FixedString(16)
)
ENGINE = Set
SETTINGS persistent = 0;

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.event_ids_mv TO {db}.event_ids
AS SELECT sipHash128(event_id) AS id_hash FROM {db}.events;

-- Resolved support cases, one row per (customer_id, case_id); the newest version wins.
CREATE TABLE IF NOT EXISTS {db}.cases
(
    customer_id   String,
    case_id       String,
    first_ms      Int64,
    resolved_ms   Int64,
    contacts      UInt32,
    recontact_ms  Nullable(Int64),
    touchpoint    LowCardinality(String),
    channel       LowCardinality(String),
    segment       LowCardinality(String),
    version       UInt64
)
ENGINE = ReplacingMergeTree(version)
ORDER BY (customer_id, case_id);

-- Trials and their outcome (converted at the first conversion, else expired at start + trial_days).
CREATE TABLE IF NOT EXISTS {db}.trials
(
    customer_id  String,
    trial_id     String,
    started_ms   Int64,
    outcome_ms   Int64,
    converted    UInt8,
    touchpoint   LowCardinality(String),
    channel      LowCardinality(String),
    segment      LowCardinality(String),
    version      UInt64
)
ENGINE = ReplacingMergeTree(version)
ORDER BY (customer_id, trial_id);

-- Subscription intervals: active at t for started_ms < t <= least(next_start_ms, cancel_ms).
CREATE TABLE IF NOT EXISTS {db}.subscriptions
(
    customer_id    String,
    start_id       String,
    started_ms     Int64,
    next_start_ms  Nullable(Int64),
    cancel_ms      Nullable(Int64),
    touchpoint     LowCardinality(String),
    channel        LowCardinality(String),
    segment        LowCardinality(String),
    version        UInt64
)
ENGINE = ReplacingMergeTree(version)
ORDER BY (customer_id, start_id);

-- Keyed per-customer state of the embedded runner (JSON), so a restart resumes without a replay.
-- The row with customer_id '' is the checkpoint: version = the last batch whose facts and state are written.
CREATE TABLE IF NOT EXISTS {db}.customer_state
(
    customer_id  String,
    version      UInt64,
    state        String
)
ENGINE = ReplacingMergeTree(version)
ORDER BY customer_id;
