"""Event buses: how ingest hands accepted events to processing (in-process, or Kafka)."""

from cxpulse.bus.base import BusUnavailable, EventBus, PublishResult

__all__ = ["BusUnavailable", "EventBus", "PublishResult"]
