"""Speed and memory benchmarks (scripts, not tests): `python -m benchmarks.run`."""
