"""Does the score predict behaviour? (SPEC §7) — the cohort's groups and the answer built from counts.

A customer's group comes from their latest answer of one survey in the cohort range; their outcomes are
what they did within `(answer, answer + horizon]`: bought again, cancelled, were named as a referrer.
The store counts customers per (group, outcome); this module names the groups, builds each outcome's
Wilson interval, and compares the best group with the worst (pooled two-proportion z-test at 5 %).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cxpulse.domain import stats

OUTCOMES = ("repurchase", "churned", "referred")


@dataclass(frozen=True, slots=True)
class SurveyGroups:
    """A survey's groups, best first and worst last, and the ClickHouse expression giving a row's group
    from its `score` and `scale` (the store runs it on the cohort's answers)."""

    survey: str
    groups: tuple[str, str, str]
    group_sql: str

    @property
    def best(self) -> str:
        return self.groups[0]

    @property
    def worst(self) -> str:
        return self.groups[-1]


SURVEYS: dict[str, SurveyGroups] = {
    "nps": SurveyGroups(
        "nps",
        ("promoter", "passive", "detractor"),
        "multiIf(score >= 9, 'promoter', score >= 7, 'passive', 'detractor')",
    ),
    "csat": SurveyGroups(
        "csat",
        ("satisfied", "neutral", "dissatisfied"),
        "multiIf(score >= if(scale = 7, 6, 4), 'satisfied', score <= 2, 'dissatisfied', 'neutral')",
    ),
    "ces": SurveyGroups(
        "ces", ("easy", "neutral", "hard"), "multiIf(score <= 3, 'easy', score <= 5, 'neutral', 'hard')"
    ),
}


class UnknownSurvey(ValueError):
    def __init__(self, survey: str) -> None:
        super().__init__(f"unknown survey {survey!r}; known: {', '.join(SURVEYS)}")


def survey_groups(survey: str) -> SurveyGroups:
    try:
        return SURVEYS[survey]
    except KeyError:
        raise UnknownSurvey(survey) from None


#: Per group: (customers, then the customers with each outcome in `OUTCOMES` order).
GroupCounts = Mapping[str, tuple[int, int, int, int]]


def _share(x: int, n: int) -> dict[str, Any]:
    ci = stats.wilson_interval(x, n)
    return {"value": None if n == 0 else 100 * x / n, "n": n, "ci": None if ci is None else list(ci)}


def outcome_groups(survey: SurveyGroups, counts: GroupCounts) -> dict[str, Any]:
    """`groups` and `significant` of the SPEC §7 answer; a group with nobody has `customers: 0`."""
    groups: dict[str, Any] = {}
    for name in survey.groups:
        customers, *with_outcome = counts.get(name, (0, 0, 0, 0))
        groups[name] = {"customers": customers}
        for outcome, x in zip(OUTCOMES, with_outcome, strict=True):
            groups[name][outcome] = _share(x, customers)
    best, worst = counts.get(survey.best, (0, 0, 0, 0)), counts.get(survey.worst, (0, 0, 0, 0))
    significant = {
        outcome: stats.proportions_significant((best[i + 1], best[0]), (worst[i + 1], worst[0]))
        for i, outcome in enumerate(OUTCOMES)
    }
    return {"groups": groups, "significant": significant}
