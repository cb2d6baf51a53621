"""Response shapes of the read and alert endpoints, so `/docs` shows them (SPEC §3, §4)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Number = int | float


class Previous(BaseModel):
    value: Number | None = Field(description="the previous window's value (null when it had no data)")
    n: int


class Reading(BaseModel):
    """One KPI reading; metric extras (`promoters`, `easy_pct`, `mean_s`, `dau` …) ride along."""

    model_config = ConfigDict(extra="allow")

    value: Number | None = Field(description="null for a window with no data, never 0")
    n: int = Field(description="the sample the value rests on (responses, cases, subscribers …)")
    ci: list[Number] | None = Field(description="95% interval [low, high]; null for counts and tiny samples")
    previous: Previous
    delta: Number | None = Field(description="value − previous value")
    significant: bool | None = Field(description="the change is significant at 5%; null if a side is empty")


class Pulse(BaseModel):
    at: str
    window: str
    filters: dict[str, str]
    readings: dict[str, Reading]


class Breakdown(BaseModel):
    metric: str
    by: str
    window: str
    at: str
    groups: dict[str, Reading]


class Journey(BaseModel):
    window: str
    at: str
    filters: dict[str, str]
    touchpoints: dict[str, dict[str, Reading]] = Field(
        description="per touchpoint in journey order, every metric's reading filtered by that touchpoint"
    )


class Point(Reading):
    start: str
    end: str


class Series(BaseModel):
    metric: str
    step: str
    points: list[Point]


class MetricInfo(BaseModel):
    id: str
    family: str
    unit: str
    direction: str = Field(description="`higher` or `lower` is better")
    description: str
    extras: list[str]


# --------------------------------------------------------------------------------------------- alerts


class NotifyTarget(BaseModel):
    type: Literal["webhook", "slack"]
    url: str
    secret: str | None = Field(
        None,
        description="masked (`whsec_…abcd`); send it back unchanged in a PUT to keep the stored secret",
    )


class RuleCondition(BaseModel):
    """`below` / `above` a `threshold`, or `decrease` / `increase` / `worsen` / `improve` `by` at least so
    much versus `baseline` (`previous` or a window such as `7d`), with `require_significant`."""

    model_config = ConfigDict(extra="allow")

    op: str


class MetricRuleOut(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    id: str
    type: Literal["metric"]
    name: str
    metric: str
    window: str
    filters: dict[str, str]
    condition: RuleCondition
    recover: Number | None = Field(description="hysteresis: where a firing rule resolves (null: threshold)")
    confidence: bool
    min_samples: int
    for_: str = Field(alias="for")
    keep_firing_for: str
    severity: str
    notify: list[NotifyTarget]
    enabled: bool
    state: str = Field(description="ok, pending, firing or no_data")


class ResponseRuleOut(BaseModel):
    id: str
    type: Literal["response"]
    name: str
    survey: str
    scores: list[int] | None = Field(description="null: the survey's unhappy answers (NPS 0–6 …)")
    filters: dict[str, str]
    cooldown: str
    notify: list[NotifyTarget]
    enabled: bool
    state: None = Field(None, description="response rules have no state")


AlertRuleOut = Annotated[MetricRuleOut | ResponseRuleOut, Field(discriminator="type")]


class AlertRuleList(BaseModel):
    rules: list[AlertRuleOut]


class RuleSummary(BaseModel):
    id: str
    name: str
    metric: str
    window: str
    filters: dict[str, str]
    severity: str
    condition: RuleCondition
    enabled: bool


class AlertOut(BaseModel):
    rule_id: str
    rule: RuleSummary
    state: str
    since: str | None = Field(description="when the rule entered its state")
    evaluated_at: str | None
    reading: Reading | None = Field(description="the reading of the last evaluation")


class AlertList(BaseModel):
    alerts: list[AlertOut]


class TransitionOut(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    rule_id: str
    name: str | None
    metric: str | None
    severity: str | None
    from_: str = Field(alias="from")
    to: str
    at: str
    notify: Literal["firing", "resolved"] | None = Field(description="the notification this change sent")
    reading: Reading | None


class TransitionList(BaseModel):
    transitions: list[TransitionOut]


class TargetRef(BaseModel):
    type: str
    url: str


class TargetStatus(BaseModel):
    target_index: int
    target: TargetRef
    status: str = Field(description="pending, delivered, failed or disabled (the target answered 410)")
    attempts: int
    next_attempt_at: str | None
    last_result: str


class AttemptOut(BaseModel):
    target_index: int
    target: TargetRef
    attempt: int
    at: str
    duration_ms: int
    outcome: str = Field(description="delivered, retry, failed or disable")
    status_code: int | None
    error: str
    next_attempt_at: str | None


class NotificationOut(BaseModel):
    id: str = Field(description="the `webhook-id`: the same on every retry")
    rule_id: str
    kind: Literal["alert", "response"]
    created_at: str
    payload: dict[str, Any] = Field(description="the JSON body (Slack targets get its text and blocks)")
    targets: list[TargetStatus]
    attempts: list[AttemptOut] = Field(description="every delivery attempt, newest first")


class NotificationList(BaseModel):
    notifications: list[NotificationOut]


class Share(BaseModel):
    value: Number | None = Field(description="% of the group's customers; null for an empty group")
    n: int
    ci: list[Number] | None = Field(description="Wilson 95% interval")


class OutcomeGroup(BaseModel):
    customers: int
    repurchase: Share
    churned: Share
    referred: Share


class Outcomes(BaseModel):
    survey: str
    window: str
    horizon: str
    at: str
    filters: dict[str, str]
    groups: dict[str, OutcomeGroup]
    significant: dict[str, bool | None] = Field(
        description="best group vs worst (promoter vs detractor …), pooled two-proportion z-test at 5%"
    )
