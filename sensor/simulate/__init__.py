"""Labelled synthetic SMTP traffic: scenarios of benign and malicious actors written as pcap."""

from sensor.simulate.engine import SimulationResult, simulate
from sensor.simulate.scenario import builtin_names, load_scenario

__all__ = ["SimulationResult", "builtin_names", "load_scenario", "simulate"]
