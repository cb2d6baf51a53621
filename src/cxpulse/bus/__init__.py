"""Event buses: how ingest hands accepted events to processing (in-process, or Kafka)."""

from cxpulse.bus.base import BusUnavailable, EventBus

__all__ = ["BusUnavailable", "EventBus"]
