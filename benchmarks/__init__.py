"""sqlvec benchmarks: measured, never asserted. Run `python -m benchmarks --help`."""
