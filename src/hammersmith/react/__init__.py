"""React: hammers (automated fixes for known errors) behind one safety layer, and their runbooks."""
