"""Inbound authentication, distinguished names, masking, passwords, the console session.
Pure rules; the transports that use them live in hub.adapters.inbound."""
