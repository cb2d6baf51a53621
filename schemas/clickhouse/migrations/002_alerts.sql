-- Alerts: rules, their state and transitions, and the notification outbox (SPEC §4).
-- `{db}` is replaced by the configured database name. Statements are separated by ';' at line end.
-- Versioned tables are ReplacingMergeTree(version): read them with FINAL; the highest version wins.

-- Alert rules as their stored JSON (secrets included: never return this column as is).
CREATE TABLE IF NOT EXISTS {db}.alert_rules
(
    rule_id     String,
    version     UInt64,
    deleted     UInt8,
    updated_ms  Int64,
    rule        String
)
ENGINE = ReplacingMergeTree(version)
ORDER BY rule_id;

-- The state of each metric rule (evaluation.RuleState as JSON), written after every evaluation that
-- changed it, so a restart resumes pending clocks and does not re-notify a firing rule.
CREATE TABLE IF NOT EXISTS {db}.alert_state
(
    rule_id  String,
    version  UInt64,
    state    String
)
ENGINE = ReplacingMergeTree(version)
ORDER BY rule_id;

-- Every state change, for GET /v1/alerts/transitions.
CREATE TABLE IF NOT EXISTS {db}.alert_transitions
(
    rule_id     String,
    at_ms       Int64,
    from_state  LowCardinality(String),
    to_state    LowCardinality(String),
    notify      LowCardinality(String),
    reading     String
)
ENGINE = MergeTree
ORDER BY (rule_id, at_ms);

-- The outbox: one row per (notification, target). `id` is the webhook-id (the same on every retry);
-- status: pending → delivered | failed | disabled. A row is only ever added with version 1 and every
-- attempt writes version + 1, so adding the same notification again can never reset a delivered row.
CREATE TABLE IF NOT EXISTS {db}.notifications
(
    id               String,
    target_index     UInt16,
    version          UInt64,
    rule_id          String,
    kind             LowCardinality(String),
    target_type      LowCardinality(String),
    url              String,
    secret           String,
    body             String,
    status           LowCardinality(String),
    attempts         UInt16,
    created_ms       Int64,
    next_attempt_ms  Int64,
    last_result      String
)
ENGINE = ReplacingMergeTree(version)
ORDER BY (id, target_index);

-- Every delivery attempt and its result, for GET /v1/alerts/notifications.
CREATE TABLE IF NOT EXISTS {db}.notification_attempts
(
    id               String,
    target_index     UInt16,
    rule_id          String,
    kind             LowCardinality(String),
    target_type      LowCardinality(String),
    url              String,
    attempt          UInt16,
    at_ms            Int64,
    duration_ms      Int64,
    outcome          LowCardinality(String),
    status_code      Nullable(UInt16),
    error            String,
    next_attempt_ms  Nullable(Int64)
)
ENGINE = MergeTree
ORDER BY (rule_id, at_ms, id);

-- Targets that answered 410 Gone: no further notification is sent to them until re-enabled.
CREATE TABLE IF NOT EXISTS {db}.disabled_targets
(
    rule_id   String,
    url       String,
    version   UInt64,
    disabled  UInt8,
    at_ms     Int64,
    reason    String
)
ENGINE = ReplacingMergeTree(version)
ORDER BY (rule_id, url);

-- Close-the-loop cooldown: the event time of the last notified answer per rule and customer.
CREATE TABLE IF NOT EXISTS {db}.response_cooldowns
(
    rule_id      String,
    customer_id  String,
    version      UInt64,
    last_ms      Int64
)
ENGINE = ReplacingMergeTree(version)
ORDER BY (rule_id, customer_id);
