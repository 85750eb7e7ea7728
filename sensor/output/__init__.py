"""Sinks: records turned into bytes by pure formatters, written by transports."""
