"""Notification delivery (SPEC §4): an outbox in the store, signed webhooks and Slack over HTTP, retries.

The outbox is the truth: a notification is a row per target, the dispatcher polls rows that are due, makes
one attempt each (its own task, its own timeout) and writes the outcome back, so a restart resumes where
it stopped and a dead target only ever delays itself.
"""
