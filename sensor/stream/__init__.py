"""Many sensors, one detector: records through a stream (Redis Streams) to `sensor detect`."""
