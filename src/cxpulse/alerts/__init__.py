"""Alerting at work: the metric-rule evaluator and the service that composes rules, evaluation and
notification delivery (the pure rules and state machine live in `cxpulse.domain.alerts`)."""

from cxpulse.alerts.evaluator import Evaluator, ReadKey
from cxpulse.alerts.service import AlertService, RuleExists, UnknownRule

__all__ = ["AlertService", "Evaluator", "ReadKey", "RuleExists", "UnknownRule"]
