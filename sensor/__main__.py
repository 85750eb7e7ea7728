"""`python -m sensor` runs the command line."""

from sensor.cli import main

main()
