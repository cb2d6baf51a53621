"""`cxpulse demo`: realistic synthetic touchpoint events (the pure generator; the HTTP runner is in
`services/demo.py`)."""
