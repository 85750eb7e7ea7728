"""One error hierarchy for the sensor; the CLI turns each into a one-line message and exit code."""


class SensorError(Exception):
    """Base of every error the sensor reports to its user (exit code 2 unless stated)."""

    exit_code = 2


class ConfigError(SensorError):
    """A configuration file or option is invalid: names the file, the key and what was expected."""


class CaptureError(SensorError):
    """A capture source cannot be opened or is not a capture: names the file and the problem."""


class ModelError(SensorError):
    """A model artefact is missing, untrusted or does not match the feature schema."""


class OutputError(SensorError):
    """An output destination cannot be opened or written."""


class RecordError(SensorError, ValueError):
    """A logged record (a JSON line read back) is not a valid record: names the field and what
    was expected."""
