"""Live views: the change feed and the fan-out of pulse readings to stream subscribers."""
