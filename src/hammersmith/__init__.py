"""hammersmith: the operations autopilot for OpenStack bare-metal testbeds."""

__version__ = "0.1.0"
