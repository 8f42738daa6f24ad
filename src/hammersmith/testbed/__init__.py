"""The local testbed: a real Ironic (fake-hardware, SQLite, noauth) on 127.0.0.1, with fault injection."""
