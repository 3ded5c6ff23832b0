"""Adapters: all I/O lives here, one technology per package (rabbitmq, sql, inbound HTTP,
the HTTP client, MLLP, MESH, metrics), with in-memory fakes in memory/. Only bootstrap,
runtime and the cli import them."""
