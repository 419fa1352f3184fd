"""Helpers that run a REAL containerd (CRI plugin) for tests: see docs/realruntime.md."""
