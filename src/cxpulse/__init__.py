"""CX Pulse: a live pulse on customer-experience KPIs, computed in event time from touchpoint events."""

__version__ = "0.1.0"
