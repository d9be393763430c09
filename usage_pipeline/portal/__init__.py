"""The outside world: an HTTP client and the udata and metrics APIs spoken through it."""
