"""`python -m sensor` runs the command line."""

from sensor.cli import main

if __name__ == "__main__":  # not when Dask's spawned workers import the main module
    main()
