"""Alert and record sinks beyond JSON lines: syslog formats and transports for SIEMs."""
