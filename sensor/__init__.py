"""port25-sensor: a passive sensor that turns SMTP traffic into sessions, behaviour and alerts."""

__version__ = "0.1.0"

__all__ = ["__version__"]
