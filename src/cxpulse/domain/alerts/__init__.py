"""Alerting, pure: rule model and validation, the rule state machine, close-the-loop matching and
notification bodies (SPEC §4). Time is always a parameter; nothing here reads a clock or does I/O."""
