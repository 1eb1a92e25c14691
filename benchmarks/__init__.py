"""Benchmarks: scripts that print figures and write JSON (not tests). See benchmarks/README.md."""
