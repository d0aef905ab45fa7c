"""Benchmarks of the serving path, and the tools that build their data."""
