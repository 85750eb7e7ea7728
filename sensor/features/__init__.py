"""Per-host behaviour over sliding windows of packet time, as a versioned feature schema."""

from sensor.features.hosts import HostTable
from sensor.features.schema import FEATURE_NAMES, FEATURE_SCHEMA_VERSION, vector

__all__ = ["FEATURE_NAMES", "FEATURE_SCHEMA_VERSION", "HostTable", "vector"]
