"""Adapters: all I/O lives here, one technology per module, with in-memory fakes beside them."""
