"""Quantify: the Prometheus exporter, rendered from the agent's latest snapshot (a scrape never calls OpenStack)."""
