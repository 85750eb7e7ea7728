"""Threshold rules over per-host features, turned into suppressed alerts."""

from sensor.detect.alerts import alert_to_dict
from sensor.detect.detector import Detector, DetectorStats
from sensor.detect.rules import RULES, AlertKind, Finding

__all__ = ["RULES", "AlertKind", "Detector", "DetectorStats", "Finding", "alert_to_dict"]
