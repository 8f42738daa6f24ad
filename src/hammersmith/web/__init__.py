"""The agent's HTTP face: /metrics today; one FastAPI app that later features (webhook, runbooks) join."""
