-- Migration 008: the outcome snapshot (issue 11): every survey answer with the time of its customer's next
-- purchase, cancellation and referral (Int64 max: none), so `/v1/outcomes` reads one row per answer
-- instead of joining every customer's outcomes at each request. Rebuilt whole by the embedded writer
-- (`store/outcome_snapshot.py`) from the events of batches up to `gen`, one partition per rebuild: a reader
-- reads the partition it was told, the writer drops the older one after switching.
-- `latest` numbers a customer's answers of a survey in the SPEC's order (time, then event_id), and
-- `next_answer_ms` is the time of the customer's next one (Int64 max: none): with no filter, an answer is
-- its customer's latest of a window exactly when it is inside and the next one is not — a plain filter.
CREATE TABLE IF NOT EXISTS {db}.answer_outcomes
(
    gen              UInt64,
    survey           LowCardinality(String),
    occurred_ms      Int64,
    latest           UInt64,
    next_answer_ms   Int64,
    customer_key     UInt64,
    score            Nullable(Int16),
    scale            UInt8,
    touchpoint       LowCardinality(String),
    channel          LowCardinality(String),
    segment          LowCardinality(String),
    next_purchase_ms Int64,
    next_cancel_ms   Int64,
    next_referral_ms Int64
)
ENGINE = MergeTree
PARTITION BY gen
ORDER BY (survey, occurred_ms);
