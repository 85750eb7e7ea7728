"""SMTP dialogue analysis: an incremental parser turning reassembled bytes into SmtpSessions."""

from sensor.smtp.anomalies import Anomaly
from sensor.smtp.limits import SmtpLimits
from sensor.smtp.parser import SmtpParser
from sensor.smtp.schema import SCHEMA_VERSION, session_from_dict, session_to_dict

__all__ = ["SCHEMA_VERSION", "Anomaly", "SmtpLimits", "SmtpParser", "session_from_dict",
           "session_to_dict"]
