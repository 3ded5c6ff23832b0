"""The `hub` command: main (run, failed, trace), endpoints, operators, the demo. With
bootstrap and runtime, the only place outside hub/adapters allowed to import adapters."""
