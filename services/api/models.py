"""Response shapes of the read endpoints, so `/docs` shows them (SPEC §3)."""

from __future__ import annotations

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
