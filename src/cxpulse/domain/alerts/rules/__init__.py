"""Alert rules (SPEC §4), one module per job: `rule` (the `Rule` union, `parse_rule` — the only way in —
and `rule_to_json`), `metric` and `response` (the two kinds: model, validation, JSON), `targets` (where
notifications go, and the secrets they carry), `shared_fields` (what every kind has) and `errors` (every
bad field named, so a 422 lists them all)."""
