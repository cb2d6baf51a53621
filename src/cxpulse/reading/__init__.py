"""The read path: KPI readings from the store, behind the small `Reader` protocol."""

from cxpulse.reading.base import MAX_SERIES_POINTS, QueryError, Reader
from cxpulse.reading.pulse_reader import PulseReader

__all__ = ["MAX_SERIES_POINTS", "PulseReader", "QueryError", "Reader"]
