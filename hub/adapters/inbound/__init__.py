"""Inbound HTTP: the outcome API, its TLS, the ops console. The only package that imports
starlette or uvicorn."""
