"""The three CX Pulse services, each a thin composition of the `cxpulse` domain and adapters."""
