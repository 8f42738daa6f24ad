"""Maintenance as a workflow: who takes a node out of service, why, until when, and the silences that go with it."""
