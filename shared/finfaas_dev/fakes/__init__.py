"""In-memory implementations of the runtime's ports, for tests; never shipped in a function image."""
