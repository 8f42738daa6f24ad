"""Detect: read-only checks over a snapshot that name what is wrong with which node."""
